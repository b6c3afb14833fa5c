"""Handshake 2: no timer guesses what a board is, one deadline bounds it on both sides, no downgrade.

Real board servers and kernels on 127.0.0.1; the misbehaving peers are small socket servers or raw
sockets written here.
"""

from __future__ import annotations

import os
import signal
import socket
import struct
import sys
import threading
import time

import pytest
from delay_proxy import DelayProxy
from helpers import KernelSession, start_board

from rpyc_ikernel.server import AUTH_TIMEOUT, HANDSHAKE_SEQ, ping_request

SERVER = [sys.executable, "-m", "rpyc_ikernel.server", "--host", "127.0.0.1"]
KERNEL_BUDGET = 3.5  # the connect budget on loopback (CONNECT_TIMEOUT: the round trip is tiny)


def _status_rows(session: KernelSession) -> dict:
    return dict(line.split(None, 1) for line in session.run("# exec(self.status())").stream().splitlines())


# --------------------------------------------------------------------------- downgrade (13.3)


def test_a_kernel_with_a_token_refuses_an_open_board_unless_told(kernelspec_prefix, tmp_path):
    server = start_board(command=[*SERVER, "--no-auth"])
    session = KernelSession.start(board_port=server.port, env={"RPYC_IKERNEL_TOKEN": "my-token"})
    marker = tmp_path / "ran"
    try:
        cell = session.run(f"open({str(marker)!r}, 'w').write('x')")
        assert cell.reply["ename"] == "BoardAuthError"
        message = cell.reply["evalue"]
        assert "does not check tokens" in message
        assert "allow_open=True" in message and "RPYC_IKERNEL_ALLOW_OPEN=1" in message
        assert "\n" not in message
        assert not marker.exists()
        connect = session.run(
            f'# exec(self.connect_remote("127.0.0.1", port={server.port}, allow_open=True))\n3'
        )
        assert connect.result == {"text/plain": "3"}
        assert _status_rows(session)["auth"].startswith("none")
    finally:
        session.stop()
    allowed = KernelSession.start(
        board_port=server.port, env={"RPYC_IKERNEL_TOKEN": "my-token", "RPYC_IKERNEL_ALLOW_OPEN": "1"}
    )
    try:
        cell = allowed.run("4")
        assert cell.result == {"text/plain": "4"}
        assert "does not check tokens" in cell.stream("stderr")  # said once, in the cell
    finally:
        allowed.stop()
        server.stop()


def test_the_local_token_file_alone_does_not_refuse_an_open_loopback_board(kernelspec_prefix, board):
    """A token found in this machine's file is not a demand: a loopback --no-auth board still works."""
    assert board.port  # the session board has created this machine's token file
    server = start_board(command=[*SERVER, "--no-auth"])
    session = KernelSession.start(board_port=server.port)
    try:
        assert session.run("5").result == {"text/plain": "5"}
    finally:
        session.stop()
        server.stop()


# --------------------------------------------------------------------------- deadlines on the board (13.2)


def test_the_board_ends_a_trickling_or_stalled_handshake_within_its_deadline(kernelspec_prefix, tmp_path):
    server = start_board(command=SERVER, env=dict(os.environ, RPYC_IKERNEL_TOKEN="t0ken-0123456789"))
    hello = ping_request(6, b"rpyc_ikernel hello 2 " + b"ab" * 16)
    ends: dict = {}

    def trickle() -> None:  # one byte every 0.5 s: each read would be quick, the whole never ends
        with socket.create_connection(("127.0.0.1", server.port)) as sock:
            started = time.monotonic()
            try:
                for byte in hello * 100:
                    sock.sendall(bytes((byte,)))
                    sock.settimeout(0.5)
                    try:
                        if sock.recv(1) == b"":
                            break
                    except socket.timeout:
                        pass
            except OSError:
                pass
            ends["trickle"] = time.monotonic() - started

    def half_frame() -> None:  # half of the hello, then silence
        with socket.create_connection(("127.0.0.1", server.port)) as sock:
            started = time.monotonic()
            sock.sendall(hello[: len(hello) // 2])
            sock.settimeout(AUTH_TIMEOUT + 10)
            try:
                sock.recv(1)
            except OSError:
                pass
            ends["half"] = time.monotonic() - started

    threads = [threading.Thread(target=trickle), threading.Thread(target=half_frame)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(AUTH_TIMEOUT + 15)
        assert AUTH_TIMEOUT - 1 < ends["trickle"] < AUTH_TIMEOUT + 2
        assert AUTH_TIMEOUT - 1 < ends["half"] < AUTH_TIMEOUT + 2
        session = KernelSession.start(board_port=server.port, env={"RPYC_IKERNEL_TOKEN": "t0ken-0123456789"})
        try:
            assert session.run("6").result == {"text/plain": "6"}  # the server still serves
        finally:
            session.stop()
    finally:
        server.stop()


# --------------------------------------------------------------------------- deadlines in the kernel (11)


class _MisbehavingBoard:
    """Accepts connections, reads the kernel's hello, then answers with `behaviour`."""

    def __init__(self, behaviour: str) -> None:
        self.behaviour = behaviour
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(8)
        self.port = self.listener.getsockname()[1]
        self._stop = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._answer, args=(sock,), daemon=True).start()

    def _answer(self, sock: socket.socket) -> None:
        reply = struct.pack("!LB", 60, 0) + b"\x02\x11" + bytes(58) + b"\n"  # shaped like an rpyc reply
        with sock:
            try:
                if self.behaviour == "old":  # a board server of handshake 1 speaks first
                    sock.sendall(b"RPYC_IKERNEL AUTH 1 " + b"ef" * 16 + b"\n")
                sock.recv(4096)
                if self.behaviour == "half":
                    sock.sendall(reply[: len(reply) // 2])
                    self._stop.wait(30)
                elif self.behaviour == "trickle":
                    for byte in reply * 100:
                        sock.sendall(bytes((byte,)))
                        if self._stop.wait(0.3):
                            return
                else:  # silent
                    self._stop.wait(30)
            except OSError:
                pass

    def close(self) -> None:
        self._stop.set()
        self.listener.close()


@pytest.mark.parametrize("behaviour", ["trickle", "half", "silent"])
def test_the_kernel_ends_a_stalling_board_within_its_budget(kernelspec_prefix, behaviour):
    peer = _MisbehavingBoard(behaviour)
    session = KernelSession.start(board_port=peer.port)
    try:
        started = time.monotonic()
        cell = session.run("1")
        elapsed = time.monotonic() - started
        assert cell.reply["ename"] == "BoardUnreachable"
        message = cell.reply["evalue"]
        assert f"no answer to our hello within {KERNEL_BUDGET:.1f} s" in message
        assert "\n" not in message
        assert KERNEL_BUDGET - 0.5 < elapsed < KERNEL_BUDGET + 2.5
        assert session.run('# exec(print("alive"))').stream() == "alive\n"
    finally:
        session.stop()
        peer.close()


def test_a_board_server_of_the_old_handshake_is_named(kernelspec_prefix):
    peer = _MisbehavingBoard("old")
    session = KernelSession.start(board_port=peer.port)
    try:
        started = time.monotonic()
        cell = session.run("1")
        assert time.monotonic() - started < KERNEL_BUDGET
        assert cell.reply["ename"] == "BoardUnreachable"
        assert "older rpyc_ikernel server (handshake 1)" in cell.reply["evalue"]
    finally:
        session.stop()
        peer.close()


def test_a_stopped_board_is_not_taken_for_an_open_one(kernelspec_prefix):
    """SIGSTOP: the hello gets no answer; after SIGCONT the board is the token board it always was."""
    server = start_board(command=SERVER, env=dict(os.environ, RPYC_IKERNEL_TOKEN="st0p-0123456789a"))
    session = KernelSession.start(board_port=server.port, env={"RPYC_IKERNEL_TOKEN": "st0p-0123456789a"})
    try:
        server.process.send_signal(signal.SIGSTOP)
        try:
            cell = session.run("1")
        finally:
            server.process.send_signal(signal.SIGCONT)
        assert cell.reply["ename"] == "BoardUnreachable"
        assert "a stopped board" in cell.reply["evalue"]
        assert "does not check tokens" not in cell.stream("stderr")
        back = session.run("2")
        assert back.result == {"text/plain": "2"}
        assert "does not check tokens" not in back.stream("stderr")
        assert _status_rows(session)["auth"] == "token (challenge-response)"
    finally:
        session.stop()
        server.stop()


def test_a_late_challenge_is_still_a_challenge(kernelspec_prefix):
    """The board's answer arrives 1.2 s late: nothing assumes an open server, the token is checked."""
    server = start_board(command=SERVER, env=dict(os.environ, RPYC_IKERNEL_TOKEN="l8te-0123456789a"))
    proxy = DelayProxy(server.port, first_answer_delay=1.2)
    session = KernelSession.start(
        board_port=proxy.port,
        env={"RPYC_IKERNEL_TOKEN": "l8te-0123456789a", "RPYC_IKERNEL_FORWARD": f"127.0.0.1:{server.port}"},
    )
    try:
        cell = session.run("7")
        assert cell.result == {"text/plain": "7"}
        assert "does not check tokens" not in cell.stream("stderr")
        assert _status_rows(session)["auth"] == "token (challenge-response)"
    finally:
        session.stop()
        proxy.close()
        server.stop()


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_a_1_s_link_connects_within_a_budget_scaled_by_its_round_trip(kernelspec_prefix, board):
    """1 s round trip through a proxy (so TCP connect measures ~0 and only the hello's answer tells
    the real round trip): a connect needs ~6 round trips, more than the 3.5 s floor."""
    proxy = DelayProxy(board.port, delay=0.5)
    session = KernelSession.start(
        board_port=proxy.port, env={"RPYC_IKERNEL_FORWARD": f"127.0.0.1:{board.port}"}
    )
    try:
        started = time.monotonic()
        cell = session.run("print('slow', flush=True)\n'over a slow link'", timeout=150)
        first = time.monotonic() - started
        assert cell.result == {"text/plain": "'over a slow link'"}, cell.reply
        assert cell.stream() == "slow\n"
        assert first > KERNEL_BUDGET  # the connect really needed more than the fixed budget
        assert session.run("2 + 2", timeout=60).result == {"text/plain": "4"}
    finally:
        session.stop()
        proxy.close()


def test_the_hello_is_a_valid_rpyc_ping(board):
    """What a plain rpyc 6 server does with our first frame: it echoes it (one round trip, no timer)."""
    from rpyc.core import brine

    from rpyc_ikernel.server import read_frame

    plain = start_board(command=[sys.executable, "tests/plain_board.py"])
    try:
        with socket.create_connection(("127.0.0.1", plain.port), timeout=5) as sock:
            sock.sendall(ping_request(6, b"rpyc_ikernel hello 2 " + b"cd" * 16))
            _, payload = read_frame(sock, time.monotonic() + 5)
        assert payload[0] == 2  # MSG_REPLY
        assert brine.load(payload[1:]) == (HANDSHAKE_SEQ, (1, b"rpyc_ikernel hello 2 " + b"cd" * 16))
    finally:
        plain.stop()


def test_the_rpyc_facts_the_server_spells_out_are_rpyc_s():
    """server.py writes rpyc's message codes and brine's tags out (it may not import rpyc early); here
    they meet the installed rpyc, and both wires' layouts meet what rpyc 5 and rpyc 6 send."""
    from rpyc.core import brine, consts

    from rpyc_ikernel import server

    assert (server.MSG_REQUEST, server.MSG_REPLY, server.MSG_EXCEPTION) == (
        consts.MSG_REQUEST,
        consts.MSG_REPLY,
        consts.MSG_EXCEPTION,
    )
    assert (server.HANDLE_PING, server.LABEL_VALUE) == (consts.HANDLE_PING, consts.LABEL_VALUE)
    assert bytes((server.BRINE_TUPLE2, server.BRINE_TUPLE3)) == brine.TAG_TUP2 + brine.TAG_TUP3
    assert bytes((server.BRINE_SMALL_INT,)) == brine.dump(0)
    args = (consts.HANDLE_PING, (consts.LABEL_VALUE, (b"hi",)))
    wire5 = brine.dump((consts.MSG_REQUEST, 9, args))  # rpyc 5's Connection._send
    wire6 = brine.I1.pack(consts.MSG_REQUEST) + brine.dump((9, args))  # rpyc 6's
    assert server.encode_message(5, consts.MSG_REQUEST, 9, args) == wire5
    assert server.encode_message(6, consts.MSG_REQUEST, 9, args) == wire6
    assert server.decode_message(wire5) == (5, consts.MSG_REQUEST, 9, args)
    assert server.decode_message(wire6) == (6, consts.MSG_REQUEST, 9, args)
    from rpyc_ikernel import compat

    assert compat.wire6_to_wire5(wire6) == wire5
    assert compat.wire5_to_wire6(wire5) == wire6
    from rpyc.core.channel import Channel

    from rpyc_ikernel.server import encode_frame

    assert encode_frame(b"abc") == Channel.FRAME_HEADER.pack(3, 0) + b"abc" + Channel.FLUSHER


def test_each_protocol_fact_has_one_owner():
    """rpyc's message codes, brine's tags, the message layout and the pseudo-file limit are assigned
    in one module each; the others import them."""
    import re

    from helpers import REPO

    owners = {}
    assignment = re.compile(
        r"^\s*((?:_?(?:MSG_REQUEST|MSG_REPLY|MSG_EXCEPTION|HANDLE_PING|LABEL_VALUE|[A-Z_]*TUPLE[23][A-Z_]*"
        r"|[A-Z_]*SMALL_INT[A-Z_]*|PSEUDO_FILE_LIMIT)\s*,?\s*)+)=",
        re.MULTILINE,
    )
    for path in sorted((REPO / "rpyc_ikernel").rglob("*.py")):
        for names in assignment.findall(path.read_text(encoding="utf-8")):
            for name in re.findall(r"[A-Z_0-9]+", names):
                owners.setdefault(name.lstrip("_"), []).append(path.relative_to(REPO).as_posix())
    assert owners == {
        "MSG_REQUEST": ["rpyc_ikernel/server.py"],
        "MSG_REPLY": ["rpyc_ikernel/server.py"],
        "MSG_EXCEPTION": ["rpyc_ikernel/server.py"],
        "HANDLE_PING": ["rpyc_ikernel/server.py"],
        "LABEL_VALUE": ["rpyc_ikernel/server.py"],
        "BRINE_TUPLE2": ["rpyc_ikernel/server.py"],
        "BRINE_TUPLE3": ["rpyc_ikernel/server.py"],
        "BRINE_SMALL_INT": ["rpyc_ikernel/server.py"],
        "PSEUDO_FILE_LIMIT": ["rpyc_ikernel/agent/wire.py"],
    }
