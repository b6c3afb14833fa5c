"""Live images: board variables shown in the notebook as displays that update in place.

``self.display("img_buffer", interval=0.05)`` adds a :class:`LiveImage`. One :class:`LiveImagePump` per
kernel serves every stream: a background thread with its own board connection (:class:`ImageLink`, a
:class:`~rpyc_ikernel.sidelink.SideLink`), so frames flow while a cell runs and neither waits for the
other. Each round trip asks the board's agent for all the streams that are due, with the digest of what
the notebook shows; the agent answers with raw encoded bytes only for frames that changed.

The first frame is a ``display_data`` with a ``display_id``, sent by ``display()`` itself while its cell
runs (so every frontend has an output to update); later changes are ``update_display_data`` of that id:
no ``clear_output`` flicker. A variable that is missing or holds no image shows one line in its display,
and the stream keeps waiting for it.
"""

from __future__ import annotations

import base64
import io
import math
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from .agent import wire
from .board import Board
from .checks import seconds
from .errors import BoardConnectionLost, BoardError
from .link import CALL_TIMEOUT, PendingCall
from .sidelink import SideLink

DEFAULT_INTERVAL = 0.05  # seconds between two looks at a variable: up to 20 frames/s
RETRY_DELAY = 1.0  # seconds between attempts to reach a board that went away
FIRST_FRAME_EXTRA_WAIT = 2.0  # display() waits for the first frame this long beyond connecting
MAX_DECODED_PIXELS = 3840 * 2160  # a frame the kernel transcodes (BMP, TIFF...) is at most 4K
MAX_IN_FLIGHT = 8  # frame requests on their way at once, at most (a far link at a fast pace)
QUICKEST_TURN_MEMORY = 10.0  # seconds over which the quickest request->answer time is remembered

Publisher = Callable[[str, dict, dict], None]  # (msg_type, content, parent header of the display)


def image_interval(value: object) -> float:
    """display()'s interval, checked: a NaN or infinite one would make the pump thread spin or stall."""
    return seconds(value, "interval", example=DEFAULT_INTERVAL)


def message_bundle(name: str, text: str) -> dict:
    """The display content for a stream that has no frame to show, in one line."""
    return {"text/plain": f"[live image {name}] {text}"}


def image_bundle(name: str, kind: str, payload: bytes) -> dict:
    """The display content for a frame: the image itself, transcoded to PNG here when it must be."""
    if kind not in wire.IMAGE_MIME:
        try:
            kind, payload = transcode_to_png(payload)
        except Exception as exc:
            what = "BMP bytes" if kind == "bmp" else "bytes that are not JPEG, PNG, GIF or BMP"
            text = f"{name} holds {len(payload)} {what}; Pillow could not read them ({exc}); waiting"
            return message_bundle(name, text)
    return {
        wire.IMAGE_MIME[kind]: base64.b64encode(payload).decode("ascii"),
        "text/plain": f"<live image {name}: {kind.upper()}, {len(payload)} bytes>",
    }


def transcode_to_png(data: bytes) -> tuple[str, bytes]:
    """BMP (or any format Pillow reads) as PNG, for a board that has no Pillow to do it."""
    from PIL import Image

    image = Image.open(io.BytesIO(data))  # reads the header only: the size is known before decoding
    width, height = image.size
    if width * height > MAX_DECODED_PIXELS:  # 300 KB of TIFF can say 8000x8000 (+250 MB here)
        raise ValueError(
            f"it is {width}x{height} pixels; the kernel decodes at most {MAX_DECODED_PIXELS / 1e6:.1f}"
            " million (4K); send JPEG or PNG, or a smaller image"
        )
    image.load()
    if image.mode not in ("RGB", "RGBA", "L", "LA", "P", "1", "I;16", "I"):
        image = image.convert("RGBA")
    out = io.BytesIO()
    image.save(out, "PNG")
    return "png", out.getvalue()


class ImageLink(SideLink):
    """The side connection that carries live images: one round trip per batch of frames.

    It is a connection of its own, so frames flow while a cell runs on the main link, and it is
    uncompressed at both ends: JPEG/PNG do not compress, and zlib would only cost time on the board.
    """

    def __init__(self, board: Board) -> None:
        super().__init__(board, for_frames=True)

    def prepare(self) -> None:
        self._read_images = self.agent.read_images  # a netref fetched once: each request is one round trip
        self.link_id = uuid.uuid4().hex  # the agent remembers what it sent on this link (pipelining)

    def request(self, session_id: str, wanted: tuple) -> PendingCall:
        """Ask for the frames of ((name, digest), ...); the answer comes from PendingCall.result."""
        return PendingCall(self.conn, self._read_images, session_id, wanted, self.link_id)


@dataclass(eq=False)
class LiveImage:
    """One board variable shown live in one display."""

    name: str
    interval: float
    parent: dict  # header of the execute_request that called display(): outputs belong to that cell
    display_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    digest: str = ""  # the agent's digest of what the notebook shows (or is about to)
    published: str = ""  # digest of the content last published (an answer may repeat a frame)
    next_due: float = 0.0
    frames: int = 0  # frames published, first one included
    shown: bool = False  # display() has published the first display_data
    stopped: bool = False
    pending: dict | None = None  # newest content received before the first display_data went out
    error: BoardError | None = None  # why the very first look failed
    ready: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass(eq=False)
class Flight:
    """One frame request on its way: what it asked for and when it left."""

    call: PendingCall
    asked: list  # the LiveImages it asked for, in order
    sent: float = field(default_factory=time.monotonic)


class FlightWindow:
    """How many frame requests may be on their way at once.

    One request per round trip caps a stream at 1/RTT frames/s (10 at 100 ms). Enough requests in
    flight to cover the round trip at the streams' pace give every interval its frame. When answers
    queue behind a link slower than the camera (an answer takes more than one interval longer than
    the quickest one lately), the window shrinks at once, and grows again only after answers came
    back without queueing (one per step until the first queueing, then two): the lag stays near one
    round trip plus one frame's transfer, no queue grows, and the latest frame wins.

    One stall (a Wi-Fi hiccup, a board busy for a moment) delays every request on its way at once:
    it shrinks the window by one, not once per late answer (that took it to 1 from any size, and
    back up took seconds on a far link). Answers to requests sent before the last shrink are
    explained by it; a queue that persists shrinks the window again one round trip later.
    """

    CALM_ANSWERS = 2  # answers without queueing before the window grows by one

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.size = 1
        self.clock = clock
        self._turns: deque = deque()  # (when, seconds from request to answer)
        self._calm = 0
        self._queued_once = False
        self._shrunk_at = -math.inf  # when the window last shrank

    @property
    def quickest(self) -> float:
        return min(turn for _, turn in self._turns) if self._turns else 0.0

    def record(self, turn: float, interval: float, sent: float | None = None) -> None:
        """An answer came `turn` seconds after its request left at `sent` (None: not known, and
        then a late answer always counts as queueing of its own)."""
        now = self.clock()
        self._turns.append((now, turn))
        while len(self._turns) > 1 and self._turns[0][0] < now - QUICKEST_TURN_MEMORY:
            self._turns.popleft()
        if interval <= 0:
            self.size = 1  # flat out: the next request leaves with each answer; more would only queue
            return
        wanted = min(MAX_IN_FLIGHT, math.ceil(self.quickest / interval) + 1)
        excess = turn - self.quickest
        if excess > interval:
            self._calm = 0
            if sent is None or sent >= self._shrunk_at:  # answers are queueing: ask less at once
                self.size, self._shrunk_at, self._queued_once = max(1, self.size - 1), now, True
        elif excess <= interval / 2:
            self._calm += 1
            if self._calm >= (self.CALM_ANSWERS if self._queued_once else 1):  # a quick start
                self.size, self._calm = self.size + 1, 0
        self.size = max(1, min(self.size, wanted))


class LiveImagePump:
    """Serves all live images of one kernel: one thread, one board connection, batched requests.

    Requests are pipelined: as many are on their way as the round trip needs at the streams' pace
    (see FlightWindow), and the next ones leave while this side base64-encodes and publishes.
    """

    def __init__(self, get_board: Callable[[], Board], session_id: str, publish: Publisher) -> None:
        self._get_board = get_board
        self._session_id = session_id
        self._publish = publish
        self._streams: dict[str, LiveImage] = {}
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------ the kernel's calls
    @property
    def names(self) -> list[str]:
        with self._cond:
            return list(self._streams)

    def start(self, name: str, interval: float, parent: dict) -> LiveImage:
        """Stream `name` into a new display of the cell `parent`; returns once that display exists.

        Raises BoardError (one line) when the board cannot be reached for the first frame.
        """
        stream = LiveImage(name=name, interval=image_interval(interval), parent=parent)
        with self._cond:
            old = self._streams.pop(name, None)
            if old is not None:
                old.stopped = True
            self._streams[name] = stream
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="rpyc_ikernel frames", daemon=True)
                self._thread.start()
            self._cond.notify_all()
        try:
            stream.ready.wait(self._get_board().connect_budget + FIRST_FRAME_EXTRA_WAIT)
            if stream.error is not None:
                raise stream.error
        except BaseException:  # the board is unreachable, or the user interrupted the wait
            self._discard(stream)
            raise
        with stream.lock:
            content = stream.pending or message_bundle(name, "waiting for the board's first frame")
            stream.pending = None
            self._send(stream, "display_data", content)
            stream.shown = True
        return stream

    def stop(self, name: str | None = None) -> list[str]:
        """Stop the stream of `name` (all streams if None); their displays keep the last frame."""
        with self._cond:
            names = list(self._streams) if name is None else [name] if name in self._streams else []
            for each in names:
                self._streams.pop(each).stopped = True
            self._cond.notify_all()
        return names

    def _discard(self, stream: LiveImage) -> None:
        with self._cond:
            stream.stopped = True
            if self._streams.get(stream.name) is stream:
                del self._streams[stream.name]
            self._cond.notify_all()

    def close(self, timeout: float = 2.0) -> None:
        """Stop every stream and wait (briefly) for the thread to close its connection."""
        self.stop()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    # ------------------------------------------------------------ the pump thread
    def _run(self) -> None:
        link: ImageLink | None = None
        flights: deque[Flight] = deque()
        window = FlightWindow()
        try:
            while True:
                with self._cond:
                    if not self._streams:
                        self._thread = None
                        return
                    streams = list(self._streams.values())
                try:
                    board = self._get_board()
                    if link is None or link.closed or link.board is not board:
                        # First use, a lost link, or connect_remote: streams move to the kernel's board.
                        if link is not None:
                            link.close()
                        link, flights, window = None, deque(), FlightWindow()
                        link = ImageLink(board)
                    self._send_due(link, streams, flights, window)
                    if not flights:
                        self._sleep_until_due(streams)
                        continue
                    wake = self._next_due(streams) if len(flights) < window.size else None
                    if not self._await_answer(flights[0], wake):
                        continue  # a request fell due before the oldest answer came: send it first
                    answered = [flights.popleft()]
                    while flights and flights[0].call.ready:  # answers already here: the newest wins
                        answered.append(flights.popleft())
                    newest = self._take_answers(answered, window)
                    self._send_due(link, streams, flights, window)  # on its way while we publish
                    for stream, answer in newest.items():
                        self._deliver(stream, answer)
                except Exception as exc:  # a lost link, or anything unexpected: say so, and retry
                    if link is not None:
                        link.close()
                    link, flights = None, deque()
                    self._link_failed(streams, exc)
        finally:
            if link is not None:
                link.close()
            with self._cond:
                if self._thread is threading.current_thread():
                    self._thread = None

    def _send_due(self, link: ImageLink, streams: list, flights: deque, window: FlightWindow) -> None:
        while len(flights) < window.size:
            request = self._request_due(link, streams)
            if request is None:
                return
            flights.append(Flight(*request))

    def _next_due(self, streams: list[LiveImage]) -> float:
        return min((s.next_due for s in streams if not s.stopped), default=time.monotonic() + RETRY_DELAY)

    def _await_answer(self, flight: Flight, wake: float | None) -> bool:
        """Wait for `flight`'s answer (True) unless `wake` comes first (False).

        An answer that takes CALL_TIMEOUT means a dead link: BoardConnectionLost.
        """
        expires = flight.sent + CALL_TIMEOUT
        until = expires if wake is None else min(wake, expires)
        if flight.call.wait(until - time.monotonic()):
            return True
        if time.monotonic() >= expires:
            flight.call.abandon()
            raise BoardConnectionLost(
                f"the board did not answer within {CALL_TIMEOUT:.0f} s; the link looks dead"
            )
        return False

    def _take_answers(self, answered: list[Flight], window: FlightWindow) -> dict:
        """Record every answer (so the next requests carry the right digests); the newest per stream."""
        now = time.monotonic()
        newest = {}
        for flight in answered:
            answers = flight.call.result(CALL_TIMEOUT)  # already in: returns at once
            window.record(now - flight.sent, min(s.interval for s in flight.asked), flight.sent)

            for stream, answer in zip(flight.asked, answers):
                self._note(stream, answer)
                if answer[1] != wire.IMAGE_SAME:
                    newest[stream] = answer
        return newest

    def _request_due(self, link: ImageLink, streams: list[LiveImage]):
        """Send one request for every stream that is due; None when none is."""
        now = time.monotonic()
        due = [s for s in streams if s.next_due <= now and not s.stopped]
        if not due:
            return None
        for stream in due:
            # Keep the interval's pace (a slow round trip does not slow it): a request that left
            # late (a slow answer held the window) does not push the next one back, but the pace
            # never falls more than one interval behind, so no burst catches up after a pause.
            stream.next_due += stream.interval
            if stream.next_due < now - stream.interval:
                stream.next_due = now + stream.interval
        wanted = tuple((s.name, s.digest) for s in due)
        return link.request(self._session_id, wanted), due

    def _sleep_until_due(self, streams: list[LiveImage]) -> None:
        wake = min(s.next_due for s in streams)
        with self._cond:
            delay = wake - time.monotonic()
            if delay > 0:
                self._cond.wait(delay)  # start() and stop() wake us up early

    def _note(self, stream: LiveImage, answer: tuple) -> None:
        """Record what the board answered before anything is published, so the next request is right."""
        digest, kind, _payload = answer
        if kind != wire.IMAGE_SAME:
            stream.digest = digest

    def _deliver(self, stream: LiveImage, answer: tuple) -> None:
        digest, kind, payload = answer
        if kind == wire.IMAGE_SAME or digest == stream.published:
            return  # requests in flight together may bring the same frame twice
        stream.published = digest
        if kind == wire.IMAGE_MESSAGE:
            content = message_bundle(stream.name, payload)
        else:
            content = image_bundle(stream.name, kind, payload)
        self._show(stream, content)

    def _show(self, stream: LiveImage, content: dict) -> None:
        with stream.lock:
            if stream.stopped:
                return
            if not stream.shown:
                stream.pending = content  # display() publishes it as the display_data
                stream.ready.set()
                return
        self._send(stream, "update_display_data", content)

    def _send(self, stream: LiveImage, msg_type: str, data: dict) -> None:
        content = {"data": data, "metadata": {}, "transient": {"display_id": stream.display_id}}
        self._publish(msg_type, content, stream.parent)
        stream.frames += 1

    def _link_failed(self, streams: list[LiveImage], exc: Exception) -> None:
        """Show the problem in every display (once), then wait a little before trying again."""
        if isinstance(exc, BoardError):
            problem = f"board link lost: {exc}"
        else:  # a bug of ours: still one line, and the kernel lives on
            problem = f"live image failed: {type(exc).__name__}: {exc}"
            exc = BoardError(problem)
        for stream in streams:
            if not stream.shown and not stream.ready.is_set():
                stream.error = exc
                stream.ready.set()
                continue
            reason = f"{problem}; retrying every {RETRY_DELAY:.0f} s"
            if stream.digest != "link:" + reason:
                stream.digest = "link:" + reason  # never an agent digest: the frame comes back after
                stream.published = stream.digest
                self._show(stream, message_bundle(stream.name, reason))
        with self._cond:
            self._cond.wait(RETRY_DELAY)
