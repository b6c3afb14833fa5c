"""Talk to a board whose rpyc speaks the other wire (rpyc 5.x against 6.x, either way round).

rpyc 5.x and 6.x differ in one place only, the first two bytes of each message inside a channel frame
(server.py spells out the layout: message_head, message_type). Handlers, boxing, brine and the
channel framing are the same, so translating those two bytes of every message is all it takes: no
decoding, one copy. It is done in the Channel, below the Connection, so the installed rpyc's own send
queue, locks and dispatch stay untouched (they differ between rpyc 5.3 and 6.0.x; overriding
Connection._send/_dispatch would have to copy them).
"""

from __future__ import annotations

import zlib

import rpyc
from rpyc.core.channel import Channel
from rpyc.utils.factory import connect_channel

from .server import local_wire, message_head, message_type

LOCAL_WIRE = local_wire()  # the wire of the rpyc installed here
# The largest message a board may send the kernel, on the wire and once inflated: far above a cell's
# output batch (4 MiB), a live image or a transfer chunk (256 KiB); a board that sends more is hostile
# or broken, and the kernel closes the link instead of buffering or inflating it.
MAX_MESSAGE = 64 * 1024 * 1024


def translate(data: bytes, source: int, target: int) -> bytes:
    """One rpyc message of wire `source` as wire `target`; ValueError if it is not a message of `source`."""
    return message_head(target, message_type(source, data)) + data[2:]


def wire6_to_wire5(data: bytes) -> bytes:
    """One rpyc message of wire 6 as wire 5."""
    return translate(data, 6, 5)


def wire5_to_wire6(data: bytes) -> bytes:
    """One rpyc message of wire 5 as wire 6."""
    return translate(data, 5, 6)


class BoardProtocolError(EOFError):
    """The board broke the protocol (a message too big, malformed, of the wrong wire): the link was
    closed. An EOFError, so rpyc and every caller treat it as a dropped link; board.py ends the cell
    with it instead of reconnecting to repeat the request."""


def broken(stream, message: str) -> BoardProtocolError:
    """Close stream for a protocol violation; the error is kept on the stream (stream.failure), as
    rpyc swallows an EOFError in some loops (poll_all) and the caller then sees only a closed link."""
    error = BoardProtocolError(message)
    try:
        stream.failure = error
    except AttributeError:
        pass
    stream.close()
    return error


class BoundedChannel(Channel):
    """rpyc's Channel, but a compressed frame inflates to MAX_MESSAGE bytes at most.

    rpyc inflates with zlib.decompress, no limit: 400 KB of a hostile board's zeros became 842 MB
    in the kernel. Over the limit, the link is closed and the read fails like a dropped link.
    """

    __slots__ = ()
    max_message = MAX_MESSAGE
    INFLATE_PIECE = 1024 * 1024

    def recv(self) -> bytes:
        header = self.stream.read(self.FRAME_HEADER.size)
        length, compressed = self.FRAME_HEADER.unpack(header)
        if length > self.max_message:
            raise broken(self.stream, oversized(length, self.max_message))
        data = self.stream.read(length + len(self.FLUSHER))[: -len(self.FLUSHER)]
        if not compressed:
            return data
        return self._inflate(data)

    def _inflate(self, data: bytes) -> bytes:
        """zlib-inflate data, a piece at a time: a bomb is stopped at max_message bytes of output."""
        inflater = zlib.decompressobj()
        pieces, size = [], 0
        try:
            while data:
                piece = inflater.decompress(data, self.INFLATE_PIECE)
                size += len(piece)
                if size > self.max_message:
                    pieces.clear()
                    raise broken(self.stream, oversized(None, self.max_message))
                pieces.append(piece)
                data = inflater.unconsumed_tail
            pieces.append(inflater.flush())  # at most a window's worth (32 KiB)
        except zlib.error as exc:
            raise broken(self.stream, f"the board sent a broken compressed message ({exc})") from None
        return b"".join(pieces)


def oversized(length: int | None, limit: int) -> str:
    """The error text for a message over the limit (length None: found while inflating it)."""
    size = "that inflates past" if length is None else f"of {length / 1048576:.0f} MiB, over"
    return f"the board sent a message {size} the limit of {limit // 1048576} MiB; closed the link"


class OtherWireChannel(BoundedChannel):
    """A Channel to a peer of the other wire: messages are translated on their way in and out."""

    __slots__ = ("_outgoing", "_incoming")

    def __init__(self, stream, peer_wire: int, compress: bool = True) -> None:
        super().__init__(stream, compress)
        if peer_wire == LOCAL_WIRE:
            raise ValueError("the peer speaks our own wire: use a plain Channel")
        self._outgoing = wire6_to_wire5 if peer_wire == 5 else wire5_to_wire6
        self._incoming = wire5_to_wire6 if peer_wire == 5 else wire6_to_wire5

    def send(self, data: bytes) -> None:
        super().send(self._outgoing(data))

    def recv(self) -> bytes:
        data = super().recv()
        try:
            return self._incoming(data)
        except (ValueError, IndexError):
            raise broken(self.stream, f"the board sent a malformed message: {bytes(data[:8])!r}") from None


def channel_for(stream, peer_wire: int) -> Channel:
    """A Channel over stream that speaks the peer's wire."""
    return BoundedChannel(stream) if peer_wire == LOCAL_WIRE else OtherWireChannel(stream, peer_wire)


def connect(stream, service, config: dict, peer_wire: int) -> rpyc.Connection:
    """rpyc's connect_stream, for a peer of either wire.

    rpyc's experimental bind_threads mode (RPYC_BIND_THREADS=true) prefixes every message with thread
    ids and is not translated: both ends must then run the same rpyc major version.
    """
    return connect_channel(channel_for(stream, peer_wire), service, config=config)
