"""The board server under a flood: it keeps accepting, caps handshakes, and logs in a few lines.

Real server processes on 127.0.0.1; the floods are plain sockets, the survivor is a real kernel.
"""

from __future__ import annotations

import logging
import os
import resource
import socket
import struct
import threading
import time

import pytest
from helpers import KernelSession, start_board

from rpyc_ikernel.server import (
    AUTH_TIMEOUT,
    CHALLENGE,
    HANDSHAKE_LIMIT,
    HELLO,
    EventLog,
    local_wire,
    ping_reply,
    ping_request,
)

BUSY = b"rpyc_ikernel busy"  # the board's answer when it takes no new connection (README, The handshake)
pytestmark = pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs Linux /proc")


def dial(port: int, source: str = "127.0.0.1") -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(source, 0))


def outcome(sock: socket.socket) -> str:
    """ "held" if the server answered our hello with its challenge, "dropped" if it closed the connection."""
    sock.settimeout(10)
    try:
        sock.sendall(ping_request(local_wire(), HELLO + b" 2 " + b"ab" * 16))
        data = sock.recv(256)
    except (ConnectionResetError, BrokenPipeError):
        return "dropped"
    return "held" if CHALLENGE in data else "dropped"


def log_lines(server) -> list[str]:
    """The server's output after its start-up lines."""
    lines = server.output().splitlines()
    start = next(i for i, line in enumerate(lines) if "listening on" in line)
    return lines[start + 1 :]


def assert_a_kernel_runs_a_cell(port: int) -> None:
    session = KernelSession.start(board_port=port)
    try:
        cell = session.run("1 + 1")
        assert cell.result == {"text/plain": "2"}, cell.reply
    finally:
        session.stop()


@pytest.fixture()
def server():
    """Our board server on a free loopback port, stopped even when the test fails."""
    started = start_board()
    yield started
    started.stop()


def wait_accepted(server, count: int, timeout: float = 20) -> None:
    """Wait until the server process holds at least `count` more descriptors than at start."""
    deadline = time.monotonic() + timeout
    while len(os.listdir(f"/proc/{server.process.pid}/fd")) < count and time.monotonic() < deadline:
        time.sleep(0.05)


def wait_closed(server, count: int, timeout: float = 20) -> None:
    """Wait until the server process holds no more than `count` descriptors again."""
    deadline = time.monotonic() + timeout
    while len(os.listdir(f"/proc/{server.process.pid}/fd")) > count and time.monotonic() < deadline:
        time.sleep(0.05)


def test_a_full_handshake_table_ends_the_oldest_handshake_of_the_busiest_address(kernelspec_prefix, server):
    """HANDSHAKE_LIMIT silent connections from one address fill the table; a newcomer from another
    address still gets in, and the oldest of the flood is answered "busy" and closed."""
    flood: list[socket.socket] = []
    try:
        base = len(os.listdir(f"/proc/{server.process.pid}/fd"))
        for _attempt in range(4):
            # the table must be full of live handshakes when the newcomer comes: on a loaded machine
            # filling it can take so long that the first ones reach their own deadline; fill it again
            started = time.monotonic()
            for _ in range(HANDSHAKE_LIMIT):
                flood.append(dial(server.port))
            wait_accepted(server, base + HANDSHAKE_LIMIT)
            if time.monotonic() - started < AUTH_TIMEOUT * 0.6:
                break
            for sock in flood:
                sock.close()
            flood.clear()
            wait_closed(server, base)
        else:
            pytest.skip("this machine is too loaded to fill the handshake table within one handshake's time")
        newcomer = dial(server.port, "127.0.0.2")
        flood.append(newcomer)
        assert outcome(newcomer) == "held"
        flood[0].settimeout(10)
        answer = flood[0].recv(512)
        assert BUSY in answer, answer
        assert outcome(flood[HANDSHAKE_LIMIT - 1]) == "held"  # the newest of the flood keeps its slot
        lines = log_lines(server)
        assert any("handshake ended for a newer connection" in line for line in lines), lines
        assert len(lines) <= 6, lines
    finally:
        for sock in flood:
            sock.close()
    assert_a_kernel_runs_a_cell(server.port)
    server.stop()
    assert "Traceback" not in server.output()


def test_a_handshake_stalled_inside_tls_is_ended_too_when_its_slot_is_taken(kernelspec_prefix, server):
    """The default server serves TLS to kernels that start it: connections that stall in the TLS
    handshake fill the table; a newcomer ends the oldest at once (not after AUTH_TIMEOUT), so stalled
    TLS handshakes cannot pile up threads either."""
    flood: list[socket.socket] = []
    try:
        base = len(os.listdir(f"/proc/{server.process.pid}/fd"))
        for _ in range(HANDSHAKE_LIMIT):
            sock = dial(server.port)
            sock.sendall(b"\x16\x03\x01")  # the start of a TLS record, then nothing
            flood.append(sock)
        wait_accepted(server, base + HANDSHAKE_LIMIT)
        time.sleep(0.5)  # each has peeked its first byte and waits inside the TLS handshake
        started = time.monotonic()
        flood.append(dial(server.port, "127.0.0.2"))
        flood[0].settimeout(AUTH_TIMEOUT + 5)
        try:
            while flood[0].recv(512):  # a TLS alert may come first; then the server closes
                pass
        except ConnectionResetError:
            pass
        assert time.monotonic() - started < AUTH_TIMEOUT / 2
    finally:
        for sock in flood:
            sock.close()
    assert_a_kernel_runs_a_cell(server.port)


class Tricklers:
    """`count` clients on 127.0.0.1 that each send our hello one byte every `pause` seconds and dial
    again whenever the server ends them: slow handshakes that go on for as long as the test wants."""

    def __init__(self, port: int, count: int, pause: float = 0.3) -> None:
        self.port = port
        self.pause = pause
        self.stopped = threading.Event()
        self.connections = 0
        self.busy_answers = 0
        self.threads = [threading.Thread(target=self._trickle, daemon=True) for _ in range(count)]
        for thread in self.threads:
            thread.start()

    def _trickle(self) -> None:
        hello = ping_request(local_wire(), HELLO + b" 2 " + b"ab" * 16)
        while not self.stopped.is_set():
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=5) as sock:
                    self.connections += 1
                    for byte in hello:
                        if self.stopped.is_set():
                            return
                        sock.sendall(bytes((byte,)))
                        sock.settimeout(self.pause)
                        try:
                            data = sock.recv(512)
                        except socket.timeout:
                            continue
                        self.busy_answers += BUSY in data
                        break  # the server ended this one: dial again
            except OSError:
                time.sleep(0.05)

    def stop(self) -> None:
        self.stopped.set()
        for thread in self.threads:
            thread.join(10)


@pytest.mark.timeout(180)
@pytest.mark.parametrize("count", [100, HANDSHAKE_LIMIT + 40])
def test_a_kernel_gets_in_while_slow_clients_trickle(kernelspec_prefix, server, count):
    """Slow handshakes from the kernel's own address (every local process is 127.0.0.1) do not keep a
    legitimate kernel out: 100 of them stay under the cap; more than the cap end their own oldest."""
    tricklers = Tricklers(server.port, count)
    try:
        deadline = time.monotonic() + 20
        while tricklers.connections < count and time.monotonic() < deadline:
            time.sleep(0.1)
        assert tricklers.connections >= count
        time.sleep(1.0)
        session = KernelSession.start(board_port=server.port)
        try:
            for n in range(3):  # each cell after the first opens no new connection; the first opens two
                cell = session.run(f"{n} + 1")
                assert cell.result == {"text/plain": str(n + 1)}, cell.reply
        finally:
            session.stop()
        if count > HANDSHAKE_LIMIT:
            assert tricklers.busy_answers >= 1
    finally:
        tricklers.stop()
    server.stop()
    assert "Traceback" not in server.output()


class BusyBoard:
    """Answers every hello with "rpyc_ikernel busy" (in the rpyc wire the kernel did not speak) and closes."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.connections = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            with sock:
                try:
                    sock.settimeout(5)
                    sock.recv(4096)
                    sock.sendall(
                        ping_reply(5 if local_wire() == 6 else 6, BUSY + b" 128 connections in the handshake")
                    )
                except OSError:
                    pass


def test_a_busy_board_is_named_busy_and_dialled_again(kernelspec_prefix):
    board = BusyBoard()
    session = KernelSession.start(board_port=board.port)
    try:
        cell = session.run("1")
        assert cell.reply["ename"] == "BoardBusy", cell.reply
        evalue = cell.reply["evalue"]
        assert f"board 127.0.0.1:{board.port} is busy" in evalue and "128 connections" in evalue
        assert "TLS" not in evalue and "wire" not in evalue
        assert "\n" not in evalue
        assert board.connections >= 3  # it dialled again within its connect deadline
    finally:
        session.stop()
        board.listener.close()


def test_the_server_survives_running_out_of_file_descriptors(kernelspec_prefix, server):
    flood: list[socket.socket] = []
    try:
        in_use = len(os.listdir(f"/proc/{server.process.pid}/fd"))
        limit = in_use + 6  # room for a kernel's connection, not for the flood
        resource.prlimit(server.process.pid, resource.RLIMIT_NOFILE, (limit, limit))
        for _ in range(30):  # more than the limit; the kernel queues the ones not accepted
            flood.append(dial(server.port))
        time.sleep(1.0)  # the server takes what it can and hits the limit
    finally:
        for sock in flood:
            sock.close()
    assert_a_kernel_runs_a_cell(server.port)
    server.stop()
    output = server.output()
    assert "Traceback" not in output
    assert "out of file descriptors" in output
    assert output.count("out of file descriptors") <= 2, output  # the first, and at most one count


def test_a_flood_of_bad_connections_costs_a_few_log_lines(kernelspec_prefix, server):
    for n in range(300):
        sock = dial(server.port)
        if n % 3 == 0:  # reset at once (rpyc asks a reset socket for its peer: a traceback each)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        elif n % 3 == 1:  # a wrong answer to the challenge
            sock.sendall(b"nonce proof\n")
        sock.close()
    time.sleep(1.0)  # let the server go through them
    assert_a_kernel_runs_a_cell(server.port)
    server.stop()
    lines = log_lines(server)
    assert "Traceback" not in server.output()
    assert any("handshake failed" in line for line in lines), lines  # failed attempts are logged
    assert len(lines) <= 8, lines


def test_event_log_logs_a_kind_once_then_a_count_per_window(caplog):
    events = EventLog(logging.getLogger("test.events"), window=0.3)
    with caplog.at_level(logging.WARNING, logger="test.events"):
        for n in range(100):
            events.event("handshake failed", f"peer {n}")
        events.event("connection dropped", "full")
        time.sleep(0.35)
        events.flush()
        events.flush()
        time.sleep(0.35)
        events.flush()  # a quiet window: nothing to say, and the next event is logged at once
        events.event("handshake failed", "peer 100")
    messages = [record.getMessage() for record in caplog.records]
    assert len(messages) == 4, messages
    assert messages[:2] == ["handshake failed: peer 0", "connection dropped: full"]
    assert messages[2].startswith("handshake failed: 99 more in the last ")
    assert messages[2].endswith(" s (last: peer 99)")
    assert messages[3] == "handshake failed: peer 100"
