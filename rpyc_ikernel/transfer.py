"""File transfer between the notebook machine and the board: ``self.upload`` / ``self.download``.

A transfer runs on its own connection to the board (a :class:`~rpyc_ikernel.sidelink.SideLink`), so it
never waits behind the main link, and that connection sends without rpyc's zlib compression: file data
is often already compressed, and on a fast link zlib costs more than it saves. The file moves in chunks
of ``CHUNK_SIZE`` bytes, one round trip each, through the agent's transfer functions. Both ends hash
what they send and receive (sha256); a file is put in place, on the board or here, only when the hashes
match, so an interrupted or failed transfer never leaves a half-written file behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
import uuid
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from .board import Board
from .errors import BoardConnectionLost, BoardError
from .link import CALL_TIMEOUT, call, close_connection
from .sidelink import SideLink

CHUNK_SIZE = 512 * 1024  # bytes per round trip: big enough to fill a link, small for a 256 MB board
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
    try:
        reader = source.open("rb")
    except PermissionError:
        raise TransferError(f"upload: permission denied reading {source}")
    started = time.monotonic()
    with reader, _side_link(board, compress) as (conn, agent), _on_board(board, conn, "upload") as transfer:
        stats = os.fstat(reader.fileno())
        mode = stats.st_mode & 0o777
        opened = transfer.open(agent.open_upload, remote_path or "", source.name, stats.st_size, mode)
        digest, done = hashlib.sha256(), 0
        write_chunk = agent.write_chunk
        while True:
            chunk = reader.read(chunk_size)
            if not chunk:
                break
            transfer.request(write_chunk, chunk)
            digest.update(chunk)
            done += len(chunk)
            if on_progress is not None:
                on_progress(done, max(done, stats.st_size))
        transfer.finish(agent.finish_upload, digest.hexdigest())
    return TransferResult(str(source), opened["path"], done, time.monotonic() - started, digest.hexdigest())


def download(
    board: Board,
    remote_path: str,
    local_path: str | os.PathLike | None = None,
    on_progress: ProgressCallback | None = None,
    chunk_size: int = CHUNK_SIZE,
    compress: bool = False,
) -> TransferResult:
    """Copy a board file here (a local directory, or no local path, keeps the file's name)."""
    started = time.monotonic()
    with _side_link(board, compress) as (conn, agent), _on_board(board, conn, "download") as transfer:
        opened = transfer.open(agent.open_download, remote_path)
        target = _local_target(local_path, opened["path"])
        with _LocalFile(target) as writer:
            digest, done = hashlib.sha256(), 0
            read_chunk = agent.read_chunk
            while True:
                chunk = transfer.request(read_chunk, chunk_size)
                if not chunk:
                    break
                writer.write(chunk)
                digest.update(chunk)
                done += len(chunk)
                if on_progress is not None:
                    on_progress(done, max(done, opened["size"]))
            sent = transfer.finish(agent.finish_download)
            if (sent["size"], sent["sha256"]) != (done, digest.hexdigest()):
                raise TransferError(
                    f"download: checksum mismatch: the board sent {sent['size']} bytes with sha256"
                    f" {sent['sha256']}, {done} bytes with sha256 {digest.hexdigest()} arrived;"
                    f" {target} was not written"
                )
            writer.keep(opened["mode"])
    return TransferResult(opened["path"], str(target), done, time.monotonic() - started, digest.hexdigest())


class _BoardTransfer:
    """The board's end of one transfer, named by a handle the kernel picks.

    The kernel picks the handle so that it can abandon a transfer whose opening reply never
    arrived (an interrupt at that moment): the board then drops it and its temporary file.
    """

    def __init__(self, conn, what: str) -> None:
        self.conn = conn
        self.what = what
        self.handle = uuid.uuid4().hex
        self.pending = False  # the board may hold state for this handle

    def open(self, method, *args) -> dict:
        self.pending = True
        try:
            return self._answer(call(self.conn, method, self.handle, *args, timeout=CALL_TIMEOUT))
        except TransferError:
            self.pending = False  # refused: the board kept nothing
            raise

    def request(self, method, *args):
        """One chunk's round trip; bytes pass through, a JSON error becomes TransferError."""
        reply = call(self.conn, method, self.handle, *args, timeout=CALL_TIMEOUT)
        return self._answer(reply) if isinstance(reply, str) else reply

    def finish(self, method, *args) -> dict:
        reply = self._answer(call(self.conn, method, self.handle, *args, timeout=CALL_TIMEOUT))
        self.pending = False
        return reply

    def _answer(self, text: str) -> dict:
        reply = json.loads(text)
        if "error" in reply:
            raise TransferError(f"{self.what}: {reply['error']}")
        return reply


@contextmanager
def _on_board(board: Board, conn, what: str):
    """A _BoardTransfer that is abandoned on the board unless it finished."""
    transfer = _BoardTransfer(conn, what)
    try:
        yield transfer
    finally:
        if transfer.pending:
            _abandon(board, conn, transfer.handle)


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

    def keep(self, mode: int) -> None:
        try:
            self.file.close()
            os.chmod(self.temp_path, mode)
            os.replace(self.temp_path, self.target)
        except OSError as exc:
            raise self._error(exc)
        self.temp_path = None

    def __exit__(self, *exc_info) -> None:
        self.file.close()
        if self.temp_path is not None:
            try:
                os.unlink(self.temp_path)
            except OSError:
                pass

    def _error(self, exc: OSError) -> TransferError:
        return TransferError(f"download: cannot write {self.target}: {exc.strerror or exc}")


def _local_target(local_path: str | os.PathLike | None, remote_path: str) -> Path:
    """Where a download goes: local_path, or the board file's name inside it or in the kernel's cwd."""
    name = remote_path.replace("\\", "/").rsplit("/", 1)[-1]
    if local_path is None or str(local_path) == "":
        return Path.cwd() / name
    target = Path(local_path).expanduser()
    if target.is_dir() or str(local_path).endswith(("/", os.sep)):
        target = target / name
    if not target.parent.is_dir():
        raise TransferError(f"download: no such local directory: {target.parent} (create it first)")
    return target.absolute()


@contextmanager
def _side_link(board: Board, compress: bool):
    """A connection of its own for one transfer, closed when the transfer ends."""
    with SideLink(board, compress=compress) as link:
        try:
            yield link.conn, link.agent
        except (EOFError, TimeoutError, ConnectionError) as exc:
            # a plain netref look-up (agent.write_chunk) failing; calls through call() are BoardErrors
            raise BoardConnectionLost(f"lost the connection to the board during the transfer ({exc!r})")


def _abandon(board: Board, conn, handle: str) -> None:
    """Tell the board to drop a failed or interrupted transfer and remove its temporary file.

    It goes over a fresh connection: an interrupt may have stopped this one in mid-message.
    """
    close_connection(conn, dead=True)  # after an interrupt the link may be stuck mid-message
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
