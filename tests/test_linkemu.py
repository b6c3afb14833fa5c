"""The link emulator itself: measured delay and rate, byte order, stall and blackhole.

Bounds are generous (a busy 2-core machine): they catch a wrong model (delay per connection instead
of per chunk, a cap that is not applied, bytes reordered by jitter), not small timing noise.
"""

from __future__ import annotations

import os
import socket
import threading
import time

import pytest
from linkemu import LinkEmulator, bytes_per_second


class EchoServer:
    """Echoes every byte back; also counts what it received."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.received = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._echo, args=(conn,), daemon=True).start()

    def _echo(self, conn: socket.socket) -> None:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with conn:
            while True:
                try:
                    data = conn.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                self.received += len(data)
                conn.sendall(data)

    def close(self) -> None:
        self.listener.close()


class SinkServer:
    """Reads and discards; records the time of every chunk."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.chunks: list[tuple[float, int]] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        try:
            conn, _ = self.listener.accept()
        except OSError:
            return
        with conn:
            while True:
                data = conn.recv(65536)
                if not data:
                    return
                self.chunks.append((time.monotonic(), len(data)))

    @property
    def total(self) -> int:
        return sum(size for _, size in self.chunks)

    def close(self) -> None:
        self.listener.close()


@pytest.fixture()
def echo():
    server = EchoServer()
    yield server
    server.close()


def dial(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def recv_exactly(sock: socket.socket, count: int) -> bytes:
    data = bytearray()
    while len(data) < count:
        chunk = sock.recv(count - len(data))
        if not chunk:
            raise EOFError(f"closed after {len(data)} of {count} bytes")
        data += chunk
    return bytes(data)


def turn_time(sock: socket.socket, size: int = 16) -> float:
    """Seconds for `size` bytes to go to the echo server and come back."""
    payload = os.urandom(size)
    started = time.monotonic()
    sock.sendall(payload)
    assert recv_exactly(sock, size) == payload
    return time.monotonic() - started


def test_a_request_response_turn_takes_one_rtt(echo):
    with LinkEmulator(echo.port, rtt=0.1) as link, dial(link.port) as sock:
        turn_time(sock)  # the upstream connection is made one up-delay after connect
        turns = sorted(turn_time(sock) for _ in range(7))
    median = turns[len(turns) // 2]
    assert 0.095 <= median <= 0.16, turns
    assert turns[0] >= 0.098  # never faster than the link


def test_delay_is_per_chunk_not_per_connection(echo):
    """Chunks written 50 ms apart arrive 50 ms apart, each one RTT after it was sent."""
    with LinkEmulator(echo.port, rtt=0.2) as link, dial(link.port) as sock:
        turn_time(sock)
        sent = []
        for index in range(4):
            sent.append(time.monotonic())
            sock.sendall(bytes([index]))
            time.sleep(0.05)
        arrived = []
        for _ in range(4):
            recv_exactly(sock, 1)
            arrived.append(time.monotonic())
    for out, back in zip(sent, arrived):
        assert 0.19 <= back - out <= 0.3, (sent, arrived)


def test_jitter_keeps_byte_order(echo):
    payload = os.urandom(200_000)
    with LinkEmulator(echo.port, rtt=0.02, jitter=0.02) as link, dial(link.port) as sock:
        for start in range(0, len(payload), 1000):
            sock.sendall(payload[start : start + 1000])
        assert recv_exactly(sock, len(payload)) == payload


def test_bandwidth_cap_is_approached_not_exceeded():
    sink = SinkServer()
    size = 1_500_000
    rate = bytes_per_second(4)  # 500 kB/s: 3 s for the payload
    try:
        with LinkEmulator(sink.port, rtt=0.02, mbit=4) as link, dial(link.port) as sock:
            sock.sendall(os.urandom(size))  # returns early: the proxy and socket buffers hold some
            deadline = time.monotonic() + 20
            while sink.total < size and time.monotonic() < deadline:
                time.sleep(0.05)
    finally:
        sink.close()
    assert sink.total == size
    first, last = sink.chunks[0][0], sink.chunks[-1][0]
    measured = (size - sink.chunks[0][1]) / (last - first)
    assert 0.8 * rate <= measured <= 1.1 * rate, measured / rate
    assert link.up.delivered == size


def test_sender_feels_back_pressure_when_the_link_is_full():
    """The emulator holds a bounded queue: a fast sender is held back instead of buffered forever."""
    sink = SinkServer()
    sent = 0
    try:
        with LinkEmulator(sink.port, mbit=1) as link, dial(link.port) as sock:
            sock.setblocking(False)
            chunk = bytes(65536)
            deadline = time.monotonic() + 1.0
            while time.monotonic() < deadline:
                try:
                    sent += sock.send(chunk)
                except BlockingIOError:
                    time.sleep(0.01)
    finally:
        sink.close()
    # 1 s of a 125 kB/s link, its queue and the loopback socket buffers: far from unbounded
    assert sent < 16 << 20, sent


def test_stall_holds_bytes_then_releases_them_all(echo):
    with LinkEmulator(echo.port) as link, dial(link.port) as sock:
        turn_time(sock)
        link.stall(1.0)
        started = time.monotonic()
        sock.sendall(b"held")
        assert recv_exactly(sock, 4) == b"held"
        assert 0.95 <= time.monotonic() - started <= 2.0
        assert turn_time(sock) < 0.1  # released: no delay left


def test_stall_until_release(echo):
    with LinkEmulator(echo.port) as link, dial(link.port) as sock:
        turn_time(sock)
        link.stall(direction="down")
        sock.sendall(b"x" * 1000)
        sock.settimeout(0.5)
        with pytest.raises(socket.timeout):
            sock.recv(1)
        assert echo.received >= 1000  # the up direction still flows
        link.release()
        sock.settimeout(5)
        assert recv_exactly(sock, 1000) == b"x" * 1000


def test_blackhole_swallows_and_never_closes(echo):
    with LinkEmulator(echo.port) as link, dial(link.port) as sock:
        turn_time(sock)
        before = echo.received
        link.blackhole = True
        sock.sendall(b"lost")
        sock.settimeout(1.0)
        with pytest.raises(socket.timeout):  # no data, and no EOF either
            sock.recv(1)
        assert echo.received == before
        assert link.open_connections == 1


def test_new_connections_into_a_blackhole_get_no_answer(echo):
    with LinkEmulator(echo.port) as link:
        link.blackhole = True
        with dial(link.port) as sock:
            sock.sendall(b"hello")
            sock.settimeout(0.5)
            with pytest.raises(socket.timeout):
                sock.recv(1)
        assert echo.received == 0


def test_settings_switch_while_connected(echo):
    with LinkEmulator(echo.port) as link, dial(link.port) as sock:
        assert turn_time(sock) < 0.05
        link.set(rtt=0.2)
        assert 0.19 <= turn_time(sock) <= 0.3
        link.set(rtt=0)
        assert turn_time(sock) < 0.05


def test_closes_pass_through_and_drop_all_cuts(echo):
    with LinkEmulator(echo.port, rtt=0.02) as link:
        with dial(link.port) as sock:
            turn_time(sock)
            sock.shutdown(socket.SHUT_WR)
            assert sock.recv(1) == b""  # the echo server saw EOF and closed: we see it, in order
        with dial(link.port) as sock:
            turn_time(sock)
            assert link.drop_all() == 1
            sock.settimeout(2)
            assert sock.recv(1) == b""


def test_only_loopback_targets():
    with pytest.raises(ValueError):
        LinkEmulator(18812, target_host="192.0.2.1")


def test_stops_by_itself_after_its_lifetime(echo):
    link = LinkEmulator(echo.port, lifetime=0.3)
    time.sleep(0.8)
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", link.port), timeout=1).close()
