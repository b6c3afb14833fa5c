"""The board server under a flood: it keeps accepting, caps handshakes, and logs in a few lines.

Real server processes on 127.0.0.1; the floods are plain sockets, the survivor is a real kernel.
"""

from __future__ import annotations

import logging
import os
import resource
import socket
import struct
import time

import pytest
from helpers import KernelSession, start_board

from rpyc_ikernel.server import (
    CHALLENGE,
    HANDSHAKE_LIMIT,
    HANDSHAKE_LIMIT_PER_PEER,
    HELLO,
    EventLog,
    local_wire,
    ping_request,
)

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


def test_handshakes_are_capped_per_address_and_in_all(kernelspec_prefix, server):
    flood: list[socket.socket] = []
    try:
        from_one = [dial(server.port) for _ in range(HANDSHAKE_LIMIT_PER_PEER + 20)]
        flood += from_one
        outcomes = [outcome(sock) for sock in from_one]
        assert outcomes.count("held") == HANDSHAKE_LIMIT_PER_PEER
        # another address still gets slots, until all of them are taken
        sources = [f"127.0.0.{n}" for n in range(2, 2 + HANDSHAKE_LIMIT // HANDSHAKE_LIMIT_PER_PEER)]
        held = HANDSHAKE_LIMIT_PER_PEER
        for source in sources:
            for _ in range(HANDSHAKE_LIMIT_PER_PEER):
                sock = dial(server.port, source)
                flood.append(sock)
                held += outcome(sock) == "held"
        assert held == HANDSHAKE_LIMIT
        assert all(outcome(sock) == "dropped" for sock in (dial(server.port, sources[-1]),))
        lines = log_lines(server)
        assert any("connection dropped" in line for line in lines)
        assert len(lines) <= 6, lines  # ~45 drops: the first of each kind, then counts
    finally:
        for sock in flood:
            sock.close()
    assert_a_kernel_runs_a_cell(server.port)
    server.stop()
    assert "Traceback" not in server.output()


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
