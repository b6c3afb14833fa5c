"""File transfer: the board's end of the kernel's self.upload / self.download.

The kernel streams a file in chunks over a side connection, several chunk requests on their way at
once; this connection serves them one after another, in order, and each names its offset, so a chunk
out of order is refused instead of corrupting the file. Every call returns JSON (or bytes for
read_chunk) and never raises for a user's mistake, so errors arrive as one clear line. An upload is
written to a hidden temporary file next to its target and renamed into place only once its sha256
matches the kernel's: a failed or interrupted upload never leaves a half-written file. Loaded on the
first transfer (hashlib and tempfile cost a small board several MB, so only then).
"""

import errno
import hashlib
import json
import os
import socket
import stat as _stat
import tempfile
import time

from .wire import PSEUDO_FILE_LIMIT

TRANSFER_IDLE_LIMIT = 600.0  # seconds after which an abandoned transfer is closed and cleaned up
TRANSFERS = {}


class _Transfer(object):
    def __init__(self, kind, path, handle, temp_path=None):
        self.kind = kind
        self.path = path
        self.file = handle
        self.temp_path = temp_path
        self.sha256 = hashlib.sha256()
        self.size = 0
        self.limit = None  # a download sends at most this many bytes (its size when opened)
        self.ended = False  # a download's file gave fewer bytes than asked: its end came early
        self.touched = time.monotonic()

    def discard(self):
        try:
            self.file.close()
        except OSError:
            pass
        if self.temp_path is not None:
            try:
                os.remove(self.temp_path)
            except OSError:
                pass


def _error(text):
    return json.dumps({"error": text})


def _describe_os_error(exc, path):
    if isinstance(exc, PermissionError):
        return "permission denied on the board: %s" % path
    if exc.errno == errno.ENOSPC:
        return "the board's disk is full while writing %s" % path
    return "%s on the board: %s" % (exc.strerror or exc, path)


def _new_transfer(handle, transfer):
    """Register a transfer under the kernel's handle; drop those abandoned long ago."""
    now = time.monotonic()
    for old_handle, old in list(TRANSFERS.items()):
        if now - old.touched > TRANSFER_IDLE_LIMIT:
            TRANSFERS.pop(old_handle, None)
            old.discard()
    TRANSFERS[handle] = transfer


def _transfer(handle, kind):
    transfer = TRANSFERS.get(handle)
    if transfer is None or transfer.kind != kind:
        return None
    transfer.touched = time.monotonic()
    return transfer


def _tune(link, compress):
    if link is not None:
        tune_link(link, compress)


def _out_of_order(transfer, offset):
    return _error(
        "chunk at byte %d arrived while the board is at byte %d of %s; try again"
        % (offset, transfer.size, transfer.path)
    )


def open_upload(handle, path, default_name, size, mode, link=None, compress=False):
    """Start writing a file of `size` bytes to path (a directory or a trailing "/" gets default_name).

    The kernel picks the handle, so it can abandon a transfer whose reply it never saw. link (the
    board's end of the calling connection) is tuned for bulk data first (see tune_link).
    """
    _tune(link, compress)
    target = os.path.expanduser(path or default_name)
    if target.endswith(("/", os.sep)) or os.path.isdir(target):
        target = os.path.join(target, default_name)
    target = os.path.abspath(target)
    directory = os.path.dirname(target)
    if not os.path.isdir(directory):
        return _error("no such directory on the board: %s (create it first)" % directory)
    if os.path.isdir(target):
        return _error("%s is a directory on the board" % target)
    if hasattr(os, "statvfs"):
        try:
            stats = os.statvfs(directory)
            free = stats.f_bavail * stats.f_frsize
            if size > free:
                return _error(
                    "not enough space on the board: %d bytes needed, %d free in %s" % (size, free, directory)
                )
        except OSError:
            pass
    try:
        descriptor, temp_path = tempfile.mkstemp(
            prefix="." + os.path.basename(target) + ".", suffix=".part", dir=directory
        )
    except OSError as exc:
        return _error(_describe_os_error(exc, directory))
    try:
        os.chmod(temp_path, mode & 0o777)
    except OSError:
        pass
    _new_transfer(handle, _Transfer("upload", target, os.fdopen(descriptor, "wb"), temp_path))
    return json.dumps({"path": target})


def write_chunk(handle, data, offset=None):
    """Append one chunk (that starts at byte `offset` of the file, if given); returns the bytes
    written so far."""
    transfer = _transfer(handle, "upload")
    if transfer is None:
        return _error("the upload was abandoned on the board (the board agent was restarted?); try again")
    if offset is not None and offset != transfer.size:
        TRANSFERS.pop(handle, None)
        transfer.discard()
        return _out_of_order(transfer, offset)
    try:
        transfer.file.write(data)
    except (OSError, ValueError) as exc:  # ValueError: aborted meanwhile from another connection
        TRANSFERS.pop(handle, None)
        transfer.discard()
        return _error(_describe_os_error(exc, transfer.path))
    transfer.sha256.update(data)
    transfer.size += len(data)
    return json.dumps({"size": transfer.size})


def finish_upload(handle, expected_sha256):
    """Put the upload in place if its sha256 is the kernel's; otherwise throw it away."""
    transfer = TRANSFERS.pop(handle, None)
    if transfer is None or transfer.kind != "upload":
        return _error("the upload was abandoned on the board (the board agent was restarted?); try again")
    digest = transfer.sha256.hexdigest()
    try:
        transfer.file.close()
        if digest != expected_sha256:
            transfer.discard()
            return _error(
                "checksum mismatch: the board received sha256 %s, the kernel sent %s; %s was not written"
                % (digest, expected_sha256, transfer.path)
            )
        os.replace(transfer.temp_path, transfer.path)
    except OSError as exc:
        transfer.discard()
        return _error(_describe_os_error(exc, transfer.path))
    return json.dumps({"path": transfer.path, "size": transfer.size, "sha256": digest})


def open_download(handle, path, link=None, compress=False):
    """Start reading a board file; returns its absolute path, size and permission bits.

    link: as for open_upload.
    """
    _tune(link, compress)
    target = os.path.abspath(os.path.expanduser(path))
    if os.path.isdir(target):
        return _error("%s is a directory on the board; download files one at a time" % target)
    if not os.path.exists(target):
        directory = os.path.dirname(target)
        if not os.path.isdir(directory):
            return _error("no such directory on the board: %s" % directory)
        return _error("no such file on the board: %s" % target)
    try:
        if not _stat.S_ISREG(os.stat(target).st_mode):  # before open(): opening a FIFO waits for a writer
            return _error("%s is not a regular file on the board (a device, FIFO or socket); copy what you"
                          " need into a file first" % target)  # fmt: skip
        reader = open(target, "rb")
        stats = os.fstat(reader.fileno())
    except OSError as exc:
        return _error(_describe_os_error(exc, target))
    transfer = _Transfer("download", target, reader)
    # the size seen now bounds the download (a file still growing); /proc, /sys files say 0: up to a cap
    transfer.limit = stats.st_size or PSEUDO_FILE_LIMIT
    _new_transfer(handle, transfer)
    reply = {"path": target, "size": stats.st_size, "mode": stats.st_mode & 0o777, "limit": transfer.limit}
    return json.dumps(reply)


def read_chunk(handle, size, offset=None):
    """The next chunk of a download (that starts at byte `offset`, if given) as bytes (b"" at the
    end), or a JSON error as str."""
    transfer = _transfer(handle, "download")
    if transfer is None:
        return _error("the download was abandoned on the board (the board agent was restarted?); try again")
    if offset is not None and offset != transfer.size:
        if offset > transfer.size and (transfer.ended or transfer.size >= transfer.limit):
            return b""  # asked ahead, past the end (or of a file that turned out shorter)
        return _out_of_order(transfer, offset)
    size = max(0, min(size, transfer.limit - transfer.size))
    try:
        data = transfer.file.read(size) if size else b""
    except (OSError, ValueError) as exc:
        TRANSFERS.pop(handle, None)
        transfer.discard()
        return _error(_describe_os_error(exc, transfer.path))
    transfer.sha256.update(data)
    transfer.size += len(data)
    if len(data) < size:
        transfer.ended = True
    return data


def finish_download(handle):
    """Close a download; returns the size and sha256 of what was sent."""
    transfer = TRANSFERS.pop(handle, None)
    if transfer is None or transfer.kind != "download":
        return _error("the download was abandoned on the board (the board agent was restarted?); try again")
    transfer.discard()
    return json.dumps({"path": transfer.path, "size": transfer.size, "sha256": transfer.sha256.hexdigest()})


def abort_transfer(handle):
    """Drop a transfer the kernel gave up on (an upload's temporary file is removed)."""
    transfer = TRANSFERS.pop(handle, None)
    if transfer is not None:
        transfer.discard()
    return json.dumps({"aborted": transfer is not None})


def tune_link(connection, compress):
    """Set how this board's end of an rpyc connection sends: zlib compression, and no Nagle delay.

    rpyc servers leave Nagle's algorithm on; a reply over 64 KiB is written in parts and its last
    part then waits for the kernel's delayed ACK (~40 ms a reply: a 128 KiB chunk download crawled
    at 3.5 MiB/s on loopback).
    """
    connection._channel.compress = bool(compress)
    try:
        sock = connection._channel.stream.sock
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except (AttributeError, OSError):
        pass  # not a TCP socket stream: nothing to tune
