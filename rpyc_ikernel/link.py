"""rpyc-level helpers every connection to a board uses: bounded calls, closing, socket tuning.

Every call to the board is bounded in time: ``call`` and ``PendingCall`` turn a timeout or a broken
socket into BoardConnectionLost (closing the connection, which a dead link would otherwise hang).
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

import rpyc
from rpyc.core.channel import Channel
from rpyc.core.service import VoidService
from rpyc.core.stream import SocketStream, Stream
from rpyc.lib import Timeout

from .bootstrap import BoardConnection
from .compat import MAX_MESSAGE, BoardProtocolError, broken, oversized
from .errors import BoardConnectionLost, BoardMisbehaved, describe_socket_error

CALL_TIMEOUT = 8.0  # seconds a request beside a cell (completion, interrupt, frames) may go unanswered
# A link silent this long while an answer is due is dead: longer than a Wi-Fi stall or a roaming
# hand-over (a 10 s stall must recover), short enough that a vanished board ends the cell
# while the user still waits for it. RST/FIN are seen at once, whatever this is.
SILENCE_LIMIT = 12.0
SILENCE_RTT_FACTOR = 10  # ... or this many round trips on a very slow link
WAIT_SLICE = 0.25  # seconds between two looks at a silent link (notices, interrupts)


class KernelSideService(VoidService):
    """The kernel's end of the link: drives the board's SlaveService and exposes nothing back.

    It asks the board for nothing on connect (rpyc's MasterService would: ~8 round trips); its
    BoardConnection fetches the classic conveniences on first use. A board running rpyc's
    full-duplex ClassicService asks its peer for modules on connect; it gets None, so the board can
    never reach into the kernel's machine.
    """

    __slots__ = ()
    _protocol = BoardConnection

    def exposed_getmodule(self, name):
        return None

    exposed_namespace = None

    def exposed_execute(self, text):
        raise PermissionError("the kernel does not run code sent by the board")

    exposed_eval = exposed_execute


class BoardStream(SocketStream):
    """rpyc's SocketStream with a deadline on every read; it hands rpyc whole frames only.

    rpyc's own read loops on socket.timeout with no deadline, so a reply frame cut short (a board
    stopped mid-result, a stalled link) blocks Channel.recv forever, below AsyncResult.set_expiry.
    Here poll() reads ahead and says "readable" only once a whole channel frame is buffered: rpyc's
    recv never waits on the network, every wait for the board is a poll(timeout) that returns, and
    callers judge a silent link by `last_heard`. read() without a poll first waits at most
    `silence_limit` seconds for the rest, then fails like a dropped link (EOFError). The socket's
    timeout (the same limit) bounds each write to a peer that takes nothing, and TLS record reads.
    Bytes the handshake already read (`early`) come first. A frame header over compat.MAX_MESSAGE
    closes the link at once (a hostile board's 4 GiB header is not buffered), and close() frees
    whatever was read ahead.
    """

    __slots__ = ("_buffer", "last_heard", "silence_limit", "_frame_started", "failure")
    MIN_RATE = 1024  # bytes/s: a message slower than this after silence_limit s is a trickle, not a link
    _HEADER = Channel.FRAME_HEADER
    _TRAILER = len(Channel.FLUSHER)

    def __init__(self, sock: socket.socket, early: bytes = b"", silence_limit: float = SILENCE_LIMIT) -> None:
        super().__init__(sock)
        sock.settimeout(silence_limit)
        self._buffer = bytearray(early)
        self.last_heard = time.monotonic()
        self.silence_limit = silence_limit
        self._frame_started: float | None = None  # when the first byte of an unfinished frame came
        self.failure: BoardProtocolError | None = None  # why the link was closed, if the board broke it

    def poll(self, timeout) -> bool:
        timeout = Timeout(timeout)  # rpyc passes seconds or its own Timeout
        while not self._whole_frame():
            self._check_pace()
            if not self._readable(timeout.timeleft()):
                return False
            self._fill()
        return True

    def _check_pace(self) -> None:
        """A frame that has been arriving for longer than the silence limit at under MIN_RATE is a
        board trickling bytes to keep a dead answer alive (each byte restarts the silence timer)."""
        if not self._buffer or self._frame_started is None:
            return
        elapsed = time.monotonic() - self._frame_started
        if elapsed > self.silence_limit and len(self._buffer) < self.MIN_RATE * elapsed:
            rate = len(self._buffer) / elapsed
            raise broken(
                self,
                f"the board trickled a message at {rate:.0f} bytes/s for {elapsed:.0f} s; closed the link",
            )

    def read(self, count: int) -> bytes:
        while len(self._buffer) < count:
            if not self._readable(self.silence_limit):
                self.close()
                raise EOFError(f"the board sent nothing for {self.silence_limit:.0f} s mid-message")
            self._fill()
        with memoryview(self._buffer) as view:
            data = bytes(view[:count])
        del self._buffer[:count]
        self._frame_started = time.monotonic() if self._buffer else None  # the next frame's pace
        return data

    def _whole_frame(self) -> bool:
        if len(self._buffer) < self._HEADER.size:
            return False
        length, _ = self._HEADER.unpack_from(self._buffer)
        if length > MAX_MESSAGE:
            raise broken(self, oversized(length, MAX_MESSAGE))
        return len(self._buffer) >= self._HEADER.size + length + self._TRAILER

    def close(self) -> None:
        super().close()
        self._buffer = bytearray()  # a dead link's read-ahead is freed now, not when rpyc lets go

    def _readable(self, timeout: float | None) -> bool:
        pending = getattr(self.sock, "pending", None)  # TLS holds decrypted bytes select() cannot see
        if pending is not None and pending():
            return True
        return Stream.poll(self, timeout)

    def _fill(self) -> None:
        try:
            data = self.sock.recv(self.MAX_IO_CHUNK)
        except socket.timeout:  # a TLS record cut short: the socket waited silence_limit
            self.close()
            raise EOFError(f"the board sent nothing for {self.silence_limit:.0f} s mid-message") from None
        except OSError as exc:
            self.close()
            raise EOFError(exc) from None
        if not data:
            self.close()
            raise EOFError("connection closed by peer")
        if not self._buffer:
            self._frame_started = time.monotonic()
        self._buffer += data
        self.last_heard = time.monotonic()


def silence_limit(rtt: float) -> float:
    """Seconds a link may stay silent while an answer is due before it is taken for dead."""
    return max(SILENCE_LIMIT, SILENCE_RTT_FACTOR * rtt)


def link_alive(conn: BoardConnection) -> bool:
    """False if the board closed or reset this idle connection (no round trip: what already arrived).

    A board server that restarted between cells closed its end; finding out before a cell is sent
    lets the cell run on the new server instead of failing as "restarted while this cell ran".
    """
    if conn.closed:
        return False
    try:
        conn.poll(0)  # dispatches whatever arrived; raises EOFError on a closed or reset socket
    except (EOFError, OSError):
        close_connection(conn, dead=True)
        return False
    return not conn.closed


def tune_socket(sock: socket.socket) -> None:
    """No Nagle delay for small requests; TCP keepalive so a board that vanished is noticed when idle."""
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for option, value in (("TCP_KEEPIDLE", 10), ("TCP_KEEPINTVL", 5), ("TCP_KEEPCNT", 3)):
        if hasattr(socket, option):
            sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, option), value)


def tune_for_frames(conn: BoardConnection, agent) -> bool:
    """Turn off rpyc's zlib compression at both ends of conn, and let the agent make the board's end
    read each request in one call; False if the board refused (slower, but frames still flow)."""
    conn.set_compression(False)
    try:
        agent.prepare_image_connection(conn.root.getconn())  # the board's end of this same connection
    except (AttributeError, TypeError, ValueError):
        return False
    return True


def close_connection(conn: BoardConnection, dead: bool = False) -> None:
    """Close without hanging: rpyc's close() waits for the peer's answer, which a dead link never sends."""
    try:
        if dead:
            conn.close_channel()
        conn.set_call_timeout(1.0)
        conn.close()
    except Exception:
        pass


def call(conn: BoardConnection, method: Callable, *args, timeout: float):
    """Call a remote method; the link is taken for dead (BoardConnectionLost) when nothing arrives on
    it for `timeout` seconds. A large answer still arriving is never cut short."""
    return PendingCall(conn, method, *args).result(timeout)


def _lost(conn: BoardConnection, exc: BaseException) -> BoardConnectionLost:
    close_connection(conn, dead=True)
    exc = getattr(conn.stream, "failure", None) or exc  # rpyc may have hidden it
    if isinstance(exc, BoardProtocolError):
        return BoardMisbehaved(str(exc))
    if not isinstance(exc, (EOFError, OSError)):  # rpyc failed on what the board sent
        return BoardMisbehaved(
            f"the board sent a message rpyc cannot take ({type(exc).__name__}); closed the link"
        )
    return BoardConnectionLost(f"lost the connection to the board ({describe_socket_error(exc)})")


class PendingCall:
    """A remote call already sent; `result` waits for its answer (link problems become BoardError)."""

    def __init__(self, conn: BoardConnection, method: Callable, *args) -> None:
        self._conn = conn
        self.conn = conn  # the connection it was sent on
        self.sent = time.monotonic()
        try:
            self._result = rpyc.async_(method)(*args)
        except Exception as exc:  # EOFError, OSError, or what a hostile board made rpyc raise
            raise _lost(conn, exc) from None

    @property
    def ready(self) -> bool:
        """The answer (or an error) is in: result() returns at once."""
        try:
            return self._result.ready
        except Exception as exc:  # EOFError, OSError, or what a hostile board made rpyc raise
            raise _lost(self._conn, exc) from None

    def silent_for(self, expected: float = 0.0) -> float:
        """Seconds the link has been silent since the answer was due (`expected` s after sending).

        Bytes of any answer count: a large answer trickling in over a slow link is not silence.
        """
        heard = getattr(self._conn.stream, "last_heard", 0.0)
        return time.monotonic() - max(self.sent + expected, heard)

    def wait(self, timeout: float) -> bool:
        """Serve the connection until the answer is in (True) or `timeout` seconds passed (False).

        Other answers that arrive meanwhile are dispatched to their own calls, so several calls can
        be in flight on one connection (live images pipeline their requests this way).
        """
        deadline = time.monotonic() + timeout
        while not self.ready:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            try:
                self._conn.serve(remaining)
            except Exception as exc:  # EOFError, OSError, or what a hostile board made rpyc raise
                raise _lost(self._conn, exc) from None
        return True

    def abandon(self) -> None:
        """Give up on the answer: the link is taken for dead and closed."""
        close_connection(self._conn, dead=True)

    def result(self, timeout: float, expected: float = 0.0):
        """The answer; the link is taken for dead (BoardConnectionLost) once it has been silent for
        `timeout` seconds beyond the `expected` time the answer may take."""
        while not self.wait(max(0.0, timeout - self.silent_for(expected))):
            if self.silent_for(expected) >= timeout:
                self.abandon()
                raise BoardConnectionLost(
                    f"the board sent nothing for {timeout:.0f} s while an answer was due; the link looks dead"
                )
        try:
            return self._result.value
        except (EOFError, OSError) as exc:
            raise _lost(self._conn, exc) from None
