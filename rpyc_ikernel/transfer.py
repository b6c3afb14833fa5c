"""File transfer between the notebook machine and the board: ``self.upload`` / ``self.download``.

A transfer borrows the board's side link (a :class:`~rpyc_ikernel.sidelink.SideLink`, opened ahead in
the background, see SideLinkSlot), so it neither waits behind the main link nor pays a connect, and
that link sends without rpyc's zlib compression: file data is often already compressed, and on a fast
link zlib costs more than it saves. The file moves in chunks of ``CHUNK_SIZE`` bytes through the
agent's transfer functions, pipelined: up to ``WINDOW`` bytes of requests are on their way at once
(a round trip per chunk would fill a 100 ms, 20 Mbit/s link only to 40%), and the opening and the
closing call travel in the same stream, so a transfer costs about one round trip beyond its bytes.
The board serves the requests of one connection in order; each chunk names its offset, so one out of
order is refused. Both ends hash what they send and receive (sha256); a file is put in place, on the
board or here, only when the hashes match, so an interrupted or failed transfer never leaves a
half-written file behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
import uuid
from collections import deque
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import rpyc
from rpyc.core import consts

from .agent.wire import PSEUDO_FILE_LIMIT
from .board import Board
from .errors import BoardConnectionLost, BoardError, describe_socket_error
from .link import CALL_TIMEOUT, call, close_connection
from .sidelink import SideLink

CHUNK_SIZE = 256 * 1024  # bytes per request: small for a 256 MB board, big enough to cost little per call
WINDOW = 4 * 1024 * 1024  # bytes of requests on their way at once: covers 100 Mbit/s at 300 ms RTT
OPENING_WINDOW = WINDOW // 4  # ... until the board accepted the transfer (a refusal wastes little)
PROGRESS_INTERVAL = 0.2  # seconds between progress updates in the cell

ProgressCallback = Callable[[int, int], None]  # (bytes done, bytes in all)


class TransferError(BoardError):
    """A transfer that could not be done, with a message a user can act on."""


@dataclass
class TransferResult:
    """What was copied where, and how fast."""

    source: str
    destination: str
    size: int
    seconds: float
    sha256: str

    @property
    def rate(self) -> float:
        """Bytes per second."""
        return self.size / self.seconds if self.seconds > 0 else float("inf")


def upload(
    board: Board,
    local_path: str | os.PathLike,
    remote_path: str | None = None,
    on_progress: ProgressCallback | None = None,
    chunk_size: int = CHUNK_SIZE,
    compress: bool = False,
) -> TransferResult:
    """Copy a local file to the board (a board directory or a trailing "/" keeps the file's name)."""
    source = Path(local_path).expanduser()
    if not source.exists():
        raise TransferError(f"upload: no such local file: {source} (the kernel runs in {Path.cwd()})")
    if source.is_dir():
        raise TransferError(f"upload: {source} is a directory; upload files one at a time")
    if not source.is_file():  # checked before open(): opening a FIFO waits for a writer
        raise TransferError(
            f"upload: {source} is not a regular file (a device, FIFO or socket); upload files"
        )
    try:
        reader = source.open("rb")
    except PermissionError:
        raise TransferError(f"upload: permission denied reading {source}")
    started = time.monotonic()
    with reader, _on_board(board, "upload", compress) as transfer:
        stats = os.fstat(reader.fileno())
        mode = stats.st_mode & 0o777
        size = stats.st_size
        transfer.open("open_upload", remote_path or "", source.name, size, mode)
        digest, done, acked = hashlib.sha256(), 0, 0
        limit = size or PSEUDO_FILE_LIMIT  # the size seen at open bounds the upload

        def settled(flight: _Flight, _answer: object) -> None:  # progress: what the board has written
            nonlocal acked
            acked += flight.size
            if on_progress is not None:
                on_progress(acked, max(acked, size))

        while done < limit:
            chunk = reader.read(min(chunk_size, limit - done))
            if not chunk:
                break
            transfer.make_room(len(chunk), settled)
            transfer.send("write_chunk", chunk, done, size=len(chunk))
            digest.update(chunk)
            done += len(chunk)
        if size == 0 and done >= limit:
            raise TransferError(
                f"upload: {source} reports size 0 (a /proc or /sys file?) and has more than"
                f" {format_size(limit)}; copy it into a regular file first"
            )
        closing = transfer.send("finish_upload", digest.hexdigest())
        transfer.finish(closing, settled)
        opened = transfer.opened
    return TransferResult(str(source), opened["path"], done, time.monotonic() - started, digest.hexdigest())


def download(
    board: Board,
    remote_path: str,
    local_path: str | os.PathLike | None = None,
    on_progress: ProgressCallback | None = None,
    chunk_size: int = CHUNK_SIZE,
    compress: bool = False,
    overwrite: bool | None = None,
) -> TransferResult:
    """Copy a board file here (a local directory, or no local path, keeps the file's name).

    The local name comes from the caller's paths only, never from the board's answer, and the file's
    mode is the board's masked (no setuid/setgid/sticky, no world-write) under this process's umask.
    overwrite: True replaces an existing file, False never does; None (the default)
    replaces it only when local_path names the file itself, not when the name was taken from
    remote_path (no local path, or a local directory).
    """
    started = time.monotonic()
    target, named = _local_target(local_path, remote_path)
    replace = named if overwrite is None else bool(overwrite)
    if not replace and os.path.lexists(target):
        raise TransferError(_exists(target, named))
    with _on_board(board, "download", compress) as transfer:
        transfer.open("open_download", remote_path)
        asked = 0
        while asked < OPENING_WINDOW:  # the first chunks go with the open (past the end: b"")
            transfer.send("read_chunk", chunk_size, asked, size=chunk_size)
            asked += chunk_size
        opened = transfer.wait_opened()
        limit = opened["limit"]  # the size seen at open (a cap for /proc and /sys files, which say 0)
        if not isinstance(limit, int) or not isinstance(opened.get("mode"), int):
            raise TransferError("download: the board's answer is malformed (size or mode is not a number)")
        with _LocalFile(target) as writer:
            digest, done, ended = hashlib.sha256(), 0, False

            def settled(flight: _Flight, chunk: bytes) -> None:
                nonlocal done, ended
                if ended or not chunk:
                    ended = True  # the file ended early (it shrank): later answers are empty
                    return
                if len(chunk) > limit - done:
                    raise TransferError(f"download: the board sent more than the {limit} bytes it announced")
                writer.write(chunk)
                digest.update(chunk)
                done += len(chunk)
                ended = len(chunk) < flight.size
                if on_progress is not None:
                    on_progress(done, max(done, opened["size"]))

            while asked < limit and not ended:
                want = min(chunk_size, limit - asked)
                transfer.make_room(want, settled)
                if not ended:
                    transfer.send("read_chunk", want, asked, size=want)
                    asked += want
            sent = transfer.finish(transfer.send("finish_download"), settled)
            if opened["size"] == 0 and done >= limit:
                raise TransferError(
                    f"download: board:{opened['path']} reports size 0 (a /proc or /sys file?) and has more"
                    f" than {format_size(limit)}; copy it into a regular file on the board first"
                )
            if (sent["size"], sent["sha256"]) != (done, digest.hexdigest()):
                raise TransferError(
                    f"download: checksum mismatch: the board sent {sent['size']} bytes with sha256"
                    f" {sent['sha256']}, {done} bytes with sha256 {digest.hexdigest()} arrived;"
                    f" {target} was not written"
                )
            writer.keep(safe_mode(opened["mode"]), replace, named)
    return TransferResult(opened["path"], str(target), done, time.monotonic() - started, digest.hexdigest())


@dataclass(eq=False)
class _Flight:
    """One request on its way to the board: its answer, and the file bytes it carries or asks for."""

    result: rpyc.AsyncResult
    size: int = 0


Settled = Callable[[_Flight, object], None]  # (a chunk's request, its answer: bytes or a dict)


class _BoardTransfer:
    """The board's end of one transfer, named by a handle the kernel picks, and its requests in flight.

    The kernel picks the handle so that it can abandon a transfer whose opening reply never
    arrived (an interrupt at that moment): the board then drops it and its temporary file. Requests
    go out without waiting (rpyc async requests, each a CALLATTR on the agent: one message, no
    look-up of the function first); their answers come in the order they were sent.
    """

    def __init__(self, link: SideLink, what: str, compress: bool) -> None:
        self.link = link
        self.conn = link.conn
        self.what = what
        self.compress = compress
        self.handle = uuid.uuid4().hex
        self.pending = False  # the board may hold state for this handle
        self.flights: deque[_Flight] = deque()
        self.in_flight = 0  # file bytes of the requests on their way
        self.opening: _Flight | None = None
        self.opened: dict | None = None  # the opening call's answer

    def open(self, name: str, *args) -> None:
        """Send the opening call; it also tunes the board's end of the link (see agent/transfer.py)."""
        self.conn.set_compression(self.compress)
        try:
            board_end = self.link.board_end()
        except (EOFError, OSError, rpyc.AsyncResultTimeout) as exc:
            raise self._lost(exc) from None
        self.pending = True
        self.opening = self.send(name, *args, board_end, self.compress)

    def send(self, name: str, *args, size: int = 0) -> _Flight:
        """Send agent.name(handle, *args) without waiting for its answer."""
        try:
            result = self.conn.async_request(
                consts.HANDLE_CALLATTR, self.link.agent, name, (self.handle, *args), ()
            )
        except (EOFError, OSError) as exc:
            raise self._lost(exc) from None
        flight = _Flight(result, size)
        self.flights.append(flight)
        self.in_flight += size
        return flight

    def make_room(self, size: int, settled: Settled) -> None:
        """Take answers until a request of `size` more bytes fits in the window.

        Until the opening call is answered only OPENING_WINDOW bytes travel with it, and its answer
        is taken as soon as it is in, so a refused transfer (no such directory, no space) wastes
        little of the link.
        """
        if self.opened is None and self.flights and self.flights[0].result.ready:
            self._settle_oldest(settled)  # the opening call's answer (raises if it was refused)
        while self.flights and self.in_flight + size > self._window():
            self._settle_oldest(settled)

    def _window(self) -> int:
        return OPENING_WINDOW if self.opened is None else WINDOW

    def wait_opened(self) -> dict:
        """The opening call's answer (it is the first request), waiting for it."""
        while self.opened is None:
            self._settle_oldest(None)
        return self.opened

    def settle_before(self, last: _Flight, settled: Settled) -> None:
        """Take the answers of every request sent before `last`."""
        while self.flights and self.flights[0] is not last:
            self._settle_oldest(settled)

    def finish(self, closing: _Flight, settled: Settled) -> dict:
        """Take every answer up to the closing call's, and return that one."""
        self.settle_before(closing, settled)
        self.flights.popleft()
        reply = self._answer(self._wait(closing))
        self.pending = False
        return reply

    def _settle_oldest(self, settled: Settled | None) -> None:
        flight = self.flights[0]
        value = self._wait(flight)
        self.flights.popleft()
        self.in_flight -= flight.size
        if isinstance(value, str):  # JSON: an error, or the upload's progress (bytes are a download's)
            try:
                value = self._answer(value)
            except TransferError:
                if flight is self.opening:
                    self.pending = False  # refused: the board kept nothing
                raise
        if flight is self.opening:
            self.opened = value
        elif settled is not None:
            settled(flight, value)

    def _wait(self, flight: _Flight):
        try:
            flight.result.set_expiry(CALL_TIMEOUT)
            return flight.result.value
        except rpyc.AsyncResultTimeout:
            close_connection(self.conn, dead=True)
            raise BoardConnectionLost(
                f"{self.what}: the board did not answer within {CALL_TIMEOUT:.0f} s; the link looks dead"
            ) from None
        except (EOFError, OSError) as exc:
            raise self._lost(exc) from None

    def _answer(self, text: str) -> dict:
        reply = json.loads(text)
        if "error" in reply:
            raise TransferError(f"{self.what}: {reply['error']}")
        return reply

    def _lost(self, exc: BaseException) -> BoardConnectionLost:
        close_connection(self.conn, dead=True)
        return BoardConnectionLost(
            f"lost the connection to the board during the {self.what} ({describe_socket_error(exc)})"
        )


@contextmanager
def _on_board(board: Board, what: str, compress: bool):
    """A _BoardTransfer on the board's side link, abandoned on the board unless it finished.

    A transfer that fails leaves the link mid-stream (answers still coming, or a request half
    sent after an interrupt): the link is then dropped, and a fresh one opened in the background.
    """
    slot = board.side_links
    link = slot.get()
    transfer = _BoardTransfer(link, what, compress)
    try:
        yield transfer
    except BaseException as exc:
        if transfer.flights or not isinstance(exc, TransferError):
            slot.drop(link)  # answers still coming, or a request cut off half sent
        if transfer.pending:
            _abandon(board, transfer.handle)
        raise


class _LocalFile:
    """A download's local file: written under a temporary name, renamed into place by keep()."""

    def __init__(self, target: Path) -> None:
        self.target = target
        self.temp_path: str | None = None
        self.file = None

    def __enter__(self) -> _LocalFile:
        try:
            descriptor, self.temp_path = tempfile.mkstemp(
                prefix=f".{self.target.name}.", suffix=".part", dir=self.target.parent
            )
        except OSError as exc:
            raise self._error(exc)
        self.file = os.fdopen(descriptor, "wb")
        return self

    def write(self, data: bytes) -> None:
        try:
            self.file.write(data)
        except OSError as exc:
            raise self._error(exc)

    def keep(self, mode: int, replace: bool = True, named: bool = True) -> None:
        """Give the file its mode and its name; replace=False never replaces an existing file, even one
        that appeared during the transfer (a hard link fails if the name exists, atomically)."""
        try:
            self.file.close()
            os.chmod(self.temp_path, mode)
            if replace:
                os.replace(self.temp_path, self.target)
            else:
                self._link_new()
        except FileExistsError:
            raise TransferError(_exists(self.target, named)) from None
        except OSError as exc:
            raise self._error(exc)
        self.temp_path = None

    def _link_new(self) -> None:
        try:
            os.link(self.temp_path, self.target)
        except FileExistsError:
            raise
        except OSError:  # no hard links on this file system (FAT, some network mounts)
            if os.path.lexists(self.target):
                raise FileExistsError(self.target) from None
            os.replace(self.temp_path, self.target)
            return
        os.unlink(self.temp_path)

    def __exit__(self, *exc_info) -> None:
        self.file.close()
        if self.temp_path is not None:
            try:
                os.unlink(self.temp_path)
            except OSError:
                pass

    def _error(self, exc: OSError) -> TransferError:
        return TransferError(f"download: cannot write {self.target}: {exc.strerror or exc}")


def _local_target(local_path: str | os.PathLike | None, remote_path: str) -> tuple[Path, bool]:
    """Where a download goes, and whether local_path named the file itself (True) or the name comes
    from remote_path, the board path the user typed (False). Never from the board's answer: a board
    that lies about its file's path must not choose a file here."""
    name = PurePosixPath(str(remote_path).replace("\\", "/")).name
    named = local_path is not None and str(local_path) != ""
    if named:
        target = Path(local_path).expanduser()
        named = not (target.is_dir() or str(local_path).endswith(("/", os.sep)))
    else:
        target = Path.cwd()
    if not named:
        if name in ("", ".", ".."):
            raise TransferError(f"download: {remote_path} names no file; give the local file's name too")
        target = target / name
    if not target.parent.is_dir():
        raise TransferError(f"download: no such local directory: {target.parent} (create it first)")
    return target.absolute(), named


def safe_mode(board_mode: int) -> int:
    """The local mode for a board file's mode: its permission bits without setuid, setgid, sticky and
    world-write, then this process's umask (as any new file here gets)."""
    return board_mode & 0o775 & ~_umask()


def _umask() -> int:
    try:
        with open("/proc/self/status") as status:  # Linux: read without changing it
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # elsewhere: read by setting (a moment's race with other threads' files)
    os.umask(mask)
    return mask


def _exists(target: Path, named: bool) -> str:
    how = "name it as the local path, or pass overwrite=True" if not named else "pass overwrite=True"
    return f"download: {target} exists and was kept; to replace it, {how}"


def _abandon(board: Board, handle: str) -> None:
    """Tell the board to drop a failed or interrupted transfer and remove its temporary file.

    It goes over a fresh connection: an interrupt may have stopped the side link in mid-message.
    """
    try:
        with SideLink(board) as fresh:
            call(fresh.conn, fresh.agent.abort_transfer, handle, timeout=2.0)
    except (BoardError, EOFError, OSError):
        pass  # best effort: the board drops abandoned transfers after TRANSFER_IDLE_LIMIT anyway


# --------------------------------------------------------------------------- progress in the cell


def format_size(size: float) -> str:
    """1536 -> '1.5 KiB'."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"


class ProgressDisplay:
    """A progress bar in the cell, updated in place (display_data, then update_display_data).

    `publish(msg_type, data, transient)` sends one display message; the kernel provides it.
    Updates are throttled to one per PROGRESS_INTERVAL, and the last one always shows. A file of
    one chunk is done before a bar could mean anything, so it shows none.
    """

    def __init__(
        self, label: str, publish: Callable[[str, dict, dict], None], quiet_up_to: int = CHUNK_SIZE
    ) -> None:
        self.label = label
        self.publish = publish
        self.quiet_up_to = quiet_up_to
        self.display_id = f"rpyc-transfer-{uuid.uuid4().hex}"
        self.started = time.monotonic()
        self.last_shown = None

    def update(self, done: int, total: int) -> None:
        if total <= self.quiet_up_to:
            return
        now = time.monotonic()
        if self.last_shown is not None and done < total and now - self.last_shown < PROGRESS_INTERVAL:
            return
        msg_type = "display_data" if self.last_shown is None else "update_display_data"
        self.last_shown = now
        self.publish(msg_type, self._bundle(done, total, now - self.started), {"display_id": self.display_id})

    def _bundle(self, done: int, total: int, seconds: float) -> dict:
        fraction = done / total if total else 1.0
        rate = f"{format_size(done / seconds)}/s" if seconds > 0 and done else ""
        amounts = f"{format_size(done)} / {format_size(total)}"
        bar = "#" * int(fraction * 30)
        text = f"{self.label}: [{bar:<30}] {fraction:4.0%}  {amounts}  {rate}".rstrip()
        html = (
            f'<div><progress value="{done}" max="{max(total, 1)}" style="width:20em"></progress>'
            f" {fraction:.0%} &nbsp;{amounts} &nbsp;{rate} &nbsp;<code>{_escape(self.label)}</code></div>"
        )
        return {"text/plain": text, "text/html": html}


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
