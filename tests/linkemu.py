"""A link emulator: a loopback TCP proxy that behaves like Wi-Fi, a VPN or a slow USB link.

This machine's kernel has no netem, so tests and benchmarks put this proxy between the kernel and a
board server, both on 127.0.0.1. Per direction (``up``: client to target, ``down``: target to client)
it models:

- one-way delay and jitter: every chunk is stamped when it is read and delivered ``delay`` (+- jitter)
  later; jitter never reorders bytes (a chunk never overtakes the one before it);
- a bandwidth cap: a token bucket in bytes/s shared by every connection in that direction, applied
  to small pieces so a large write trickles out as it would on a real link;
- a bounded queue (the link's bytes in flight plus a router buffer): when it is full the proxy stops
  reading, so the sender feels TCP back-pressure instead of an infinitely fast link;
- stall: hold every byte (for N seconds, or until ``release``), then deliver what was held;
- blackhole: swallow everything in both directions and never close (a host that vanished).

Everything can be switched while connections are open. Threads only; everything stops with
``close()``, the context manager, or by itself after ``lifetime`` seconds.

What it cannot model: the kernel's ``connect()`` returns as soon as the proxy's socket accepts, so
TCP's own handshake (one RTT on a real link) is missing; the proxy opens its upstream connection one
``up`` delay later, so everything after ``connect()`` returns is timed as on a real link. The proxy
also acknowledges bytes locally (like a split-TCP accelerator): Nagle's algorithm at the ends waits
for loopback ACKs, not for ACKs a whole RTT away.
"""

from __future__ import annotations

import ipaddress
import random
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass, replace

UNLIMITED_QUEUE = 8 << 20  # bytes a direction may hold when it has no bandwidth cap
MIN_QUEUE = 64 << 10
PIECE_SECONDS = 0.002  # a capped link delivers in pieces of about this much link time ...
MIN_PIECE = 1448  # ... but never smaller than one TCP segment
READ_SIZE = 65536
EOF = None  # queued after the last chunk: the reader saw the peer's FIN


def bytes_per_second(megabits_per_second: float) -> float:
    """Bytes per second of a link of that many Mbit/s."""
    return megabits_per_second * 125_000


@dataclass(frozen=True)
class Direction:
    """How one direction of the link behaves. Replaced as a whole, so a change is atomic."""

    delay: float = 0.0  # one-way seconds
    jitter: float = 0.0  # each chunk's delay varies by up to +- this many seconds (order is kept)
    rate: float | None = None  # bytes/s; None: no cap
    burst: int | None = None  # token bucket depth in bytes; None: 2 ms of the rate, at least 2 segments
    buffer: float = 0.05  # seconds of queueing at `rate` the router holds before the sender waits

    def bucket(self) -> float:
        """The token bucket's depth in bytes: what may pass at once after the link was idle."""
        if self.burst is not None:
            return self.burst
        return max(2 * MIN_PIECE, (self.rate or 0) * PIECE_SECONDS)

    def queue_limit(self) -> int:
        if not self.rate:
            return UNLIMITED_QUEUE
        in_flight = self.rate * (self.delay + self.jitter + self.buffer) + self.bucket()
        return max(MIN_QUEUE, int(in_flight))

    def piece_size(self) -> int:
        if not self.rate:
            return READ_SIZE
        return max(MIN_PIECE, min(READ_SIZE, int(self.rate * PIECE_SECONDS)))


class Lane:
    """One direction of the link, shared by all connections: settings, bandwidth, stall, counters."""

    def __init__(self, name: str, seed: int) -> None:
        self.name = name
        self.settings = Direction()
        self.blackhole = False
        self.delivered = 0  # bytes handed to the receiving end so far
        self._lock = threading.Lock()
        self._free_at = 0.0  # when the bottleneck has sent everything reserved so far
        self._held_until = 0.0  # stall: deliver nothing before this (inf: until release)
        self._random = random.Random(seed)

    def reserve(self, arrival: float, size: int, settings: Direction) -> float:
        """When a piece of `size` bytes read at `arrival` has fully left the bottleneck."""
        if not settings.rate:
            return arrival
        with self._lock:
            start = max(self._free_at, arrival - settings.bucket() / settings.rate)
            self._free_at = start + size / settings.rate
            return max(self._free_at, arrival)

    def jitter(self, settings: Direction) -> float:
        if not settings.jitter:
            return 0.0
        with self._lock:
            return self._random.uniform(-settings.jitter, settings.jitter)

    def stall(self, seconds: float | None) -> None:
        self._held_until = float("inf") if seconds is None else time.monotonic() + seconds

    def release(self) -> None:
        self._held_until = 0.0

    def held_for(self, now: float) -> float:
        """Seconds this lane still holds its bytes (0: not stalled)."""
        return max(0.0, self._held_until - now)


class Pipe:
    """One direction of one connection: a reader stamps chunks, a writer delivers them on time."""

    def __init__(self, connection: Connection, lane: Lane, source: socket.socket) -> None:
        self.connection = connection
        self.lane = lane
        self.source = source
        self.sink: socket.socket | None = None  # set when the far end is connected
        self.queue: deque = deque()  # (deliver_at, bytes or EOF)
        self.queued = 0
        self.last_delivery = 0.0
        self.cond = threading.Condition()
        self.finished = False  # delivered EOF (or gave up)

    def start_reading(self) -> None:
        threading.Thread(target=self._read_loop, name=f"linkemu {self.lane.name} read", daemon=True).start()

    def start_writing(self, sink: socket.socket) -> None:
        with self.cond:
            self.sink = sink
            self.cond.notify_all()
        threading.Thread(target=self._write_loop, name=f"linkemu {self.lane.name} write", daemon=True).start()

    # ------------------------------------------------------------ reading
    def _read_loop(self) -> None:
        try:
            while not self.connection.closed:
                data = self.source.recv(READ_SIZE)
                arrival = time.monotonic()
                if self.lane.blackhole:
                    if not data:
                        return  # a vanished host never passes on a close
                    continue
                if not data:
                    self._enqueue(arrival, EOF)
                    return
                self.connection.emulator._record(self.lane, data)
                self._enqueue(arrival, data)
        except OSError:
            self.connection.abort()

    def _enqueue(self, arrival: float, data: bytes | None) -> None:
        settings = self.lane.settings
        pieces = [EOF] if data is EOF else _split(data, settings.piece_size())
        for piece in pieces:
            size = 0 if piece is EOF else len(piece)
            sent = self.lane.reserve(arrival, size, settings)
            due = max(self.last_delivery, sent + max(0.0, settings.delay + self.lane.jitter(settings)))
            self.last_delivery = due
            with self.cond:
                while self.queued >= settings.queue_limit() and not self.connection.closed:
                    self.cond.wait(0.1)  # the link is full: the sender waits, as on a real link
                self.queue.append((due, piece))
                self.queued += size
                self.cond.notify_all()

    # ------------------------------------------------------------ writing
    def _write_loop(self) -> None:
        try:
            while True:
                batch = self._take_due()
                if batch is None:
                    return
                data = b"".join(piece for piece in batch if piece is not EOF)
                if data:
                    self.sink.sendall(data)
                    self.lane.delivered += len(data)
                if batch and batch[-1] is EOF:
                    self.finished = True
                    self.connection.half_closed(self.sink)
                    return
        except OSError:
            self.connection.abort()

    def _take_due(self) -> list | None:
        """Wait until the head of the queue is due and the lane not stalled; everything due by now."""
        with self.cond:
            while True:
                if self.connection.closed:
                    return None
                now = time.monotonic()
                if self.lane.blackhole:
                    self.queue.clear()
                    self.queued = 0
                    self.cond.notify_all()
                held = self.lane.held_for(now)
                if held:
                    self.cond.wait(min(held, 0.05))
                    continue
                if self.queue and self.queue[0][0] <= now:
                    break
                wait = self.queue[0][0] - now if self.queue else 0.1
                self.cond.wait(min(wait, 0.1))
            batch = []
            while self.queue and self.queue[0][0] <= now:
                _due, piece = self.queue.popleft()
                batch.append(piece)
                if piece is not EOF:
                    self.queued -= len(piece)
            self.cond.notify_all()
            return batch


def _split(data: bytes, size: int) -> list:
    if len(data) <= size:
        return [data]
    view = memoryview(data)
    return [bytes(view[i : i + size]) for i in range(0, len(data), size)]


class Connection:
    """A client's connection through the emulator and its connection to the target."""

    def __init__(self, emulator: LinkEmulator, client: socket.socket) -> None:
        self.emulator = emulator
        self.client = client
        self.upstream: socket.socket | None = None
        self.closed = False
        self._lock = threading.Lock()
        self.up = Pipe(self, emulator.up, client)
        self.down: Pipe | None = None

    def start(self) -> None:
        self.up.start_reading()  # bytes the client sends at once are stamped now, not when we dial
        threading.Thread(target=self._dial, name="linkemu dial", daemon=True).start()

    def _dial(self) -> None:
        """Connect to the target after the up delay (what a real link's SYN would take)."""
        emulator = self.emulator
        while emulator.up.blackhole and not self.closed:
            time.sleep(0.05)  # a vanished host: nobody answers until the link comes back
        delay = emulator.up.settings.delay
        if delay:
            time.sleep(delay)
        if self.closed:
            return
        try:
            upstream = socket.create_connection(("127.0.0.1", emulator.target_port), timeout=5)
        except OSError:
            self.abort()  # the client sees its connection end, as with a refused one
            return
        upstream.settimeout(None)
        _tune(upstream)
        with self._lock:
            if self.closed:
                upstream.close()
                return
            self.upstream = upstream
            self.down = Pipe(self, emulator.down, upstream)
        self.up.start_writing(upstream)
        self.down.start_reading()
        self.down.start_writing(self.client)

    def half_closed(self, sink: socket.socket) -> None:
        """One direction delivered its EOF: pass the FIN on; close all once both directions have."""
        try:
            sink.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        if self.up.finished and self.down is not None and self.down.finished:
            self.abort()

    def abort(self) -> None:
        """Cut both ends at once (each sees EOF or a reset)."""
        with self._lock:
            if self.closed:
                return
            self.closed = True
            sockets = [s for s in (self.client, self.upstream) if s is not None]
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()
        for pipe in (self.up, self.down):
            if pipe is not None:
                with pipe.cond:
                    pipe.cond.notify_all()
        self.emulator._forget(self)


def _tune(sock: socket.socket) -> None:
    """The proxy adds no Nagle delay of its own: it forwards each chunk when it is due."""
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class LinkEmulator:
    """Forwards 127.0.0.1:<port> to 127.0.0.1:<target_port> through an emulated link.

    ``rtt`` is split evenly between the directions; ``mbit`` caps both. ``up``/``down`` override
    one direction. Use :meth:`set`, :meth:`stall`, :meth:`release` and :attr:`blackhole` while
    connections are open.
    """

    def __init__(
        self,
        target_port: int,
        *,
        target_host: str = "127.0.0.1",
        rtt: float = 0.0,
        jitter: float = 0.0,
        mbit: float | None = None,
        record_client_bytes: int = 0,
        lifetime: float = 1800.0,
        max_connections: int = 64,
        seed: int = 0,
    ) -> None:
        if not ipaddress.ip_address(target_host).is_loopback:
            raise ValueError(f"the link emulator only forwards to loopback, not {target_host}")
        self.target_port = target_port
        # a kernel that dials this emulator must say the board server sees it arrive at the target
        self.forward_env = {"RPYC_IKERNEL_FORWARD": f"{target_host}:{target_port}"}
        self.up = Lane("up", seed)
        self.down = Lane("down", seed + 1)
        self.set(rtt=rtt, jitter=jitter, mbit=mbit)
        self.connections = 0  # accepted so far
        self.sent_by_client = bytearray()  # the first record_client_bytes bytes clients sent
        self._record_limit = record_client_bytes
        self._max_connections = max_connections
        self._open: list[Connection] = []
        self._lock = threading.Lock()
        self._closed = False
        self._expires = time.monotonic() + lifetime
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.listener.settimeout(0.2)
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept_loop, name="linkemu accept", daemon=True).start()

    # ------------------------------------------------------------ settings
    def set(
        self,
        rtt: float | None = None,
        jitter: float | None = None,
        mbit: float | None = ...,
        **direction,
    ) -> None:
        """Change both directions: rtt (split evenly), jitter (+- per direction), mbit (None: no cap).

        Other keywords (burst, buffer) go to both directions' :class:`Direction` as they are. New
        values apply to bytes read from now on; bytes already in flight keep their delivery time.
        """
        changes = dict(direction)
        if rtt is not None:
            changes["delay"] = rtt / 2
        if jitter is not None:
            changes["jitter"] = jitter
        if mbit is not ...:
            changes["rate"] = bytes_per_second(mbit) if mbit else None
        for lane in (self.up, self.down):
            lane.settings = replace(lane.settings, **changes)

    def set_direction(self, name: str, **changes) -> None:
        """Change one direction ("up" or "down"): delay, jitter, rate (bytes/s), burst, buffer."""
        lane = self._lanes(name)[0]
        lane.settings = replace(lane.settings, **changes)

    @property
    def rtt(self) -> float:
        return self.up.settings.delay + self.down.settings.delay

    @property
    def blackhole(self) -> bool:
        return self.up.blackhole and self.down.blackhole

    @blackhole.setter
    def blackhole(self, on: bool) -> None:
        """True: swallow everything both ways and never close (bytes swallowed are gone for good)."""
        for lane in (self.up, self.down):
            lane.blackhole = bool(on)

    def stall(self, seconds: float | None = None, direction: str = "both") -> None:
        """Hold every byte for `seconds` (None: until release()), then deliver what was held."""
        for lane in self._lanes(direction):
            lane.stall(seconds)

    def release(self, direction: str = "both") -> None:
        for lane in self._lanes(direction):
            lane.release()

    def _lanes(self, direction: str) -> list[Lane]:
        lanes = {"up": [self.up], "down": [self.down], "both": [self.up, self.down]}
        if direction not in lanes:
            raise ValueError(f"direction is 'up', 'down' or 'both', not {direction!r}")
        return lanes[direction]

    # ------------------------------------------------------------ connections
    @property
    def open_connections(self) -> int:
        with self._lock:
            return len(self._open)

    def _accept_loop(self) -> None:
        while not self._closed:
            if time.monotonic() > self._expires:
                self.close()  # a forgotten emulator does not outlive its test run
                return
            try:
                client, _ = self.listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            client.settimeout(None)
            _tune(client)
            self.connections += 1
            connection = Connection(self, client)
            with self._lock:
                if len(self._open) >= self._max_connections:
                    client.close()
                    continue
                self._open.append(connection)
            connection.start()

    def _forget(self, connection: Connection) -> None:
        with self._lock:
            if connection in self._open:
                self._open.remove(connection)

    def _record(self, lane: Lane, data: bytes) -> None:
        room = self._record_limit - len(self.sent_by_client)
        if lane is self.up and room > 0:
            self.sent_by_client += data[:room]

    def drop_all(self) -> int:
        """Cut every open connection (both ends see EOF or a reset); returns how many were cut."""
        with self._lock:
            connections, self._open = self._open, []
        for connection in connections:
            connection.abort()
        return len(connections)

    def close(self) -> None:
        self._closed = True
        try:
            self.listener.close()
        except OSError:
            pass
        self.drop_all()

    def __enter__(self) -> LinkEmulator:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
