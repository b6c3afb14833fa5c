"""Nothing lost around a stall (issue 20.6): output of a cell the kernel gave up on while the board was
stopped (SIGSTOP), and of a cell that ran only once the board woke up, shows in the next cell."""

from __future__ import annotations

import os
import signal
import time

import pytest
from helpers import KernelSession, start_board

EARLIER = "the previous cell's output that arrived after it ended"


@pytest.fixture()
def stalling(kernelspec_prefix):
    server = start_board()
    session = KernelSession.start(board_port=server.port)
    yield session, server
    os.kill(server.process.pid, signal.SIGCONT)
    session.stop()
    server.stop()


def test_output_printed_around_a_stall_arrives_in_the_next_cell(stalling):
    session, server = stalling
    assert session.run("import time").status == "ok"
    code = "for i in range(30):\n    print('line', i, flush=True)\n    time.sleep(0.1)\n'first done'"
    msg_id = session.client.execute(code)
    time.sleep(1.2)
    os.kill(server.process.pid, signal.SIGSTOP)
    reply = session.client.get_shell_msg(timeout=60)
    while reply["parent_header"].get("msg_id") != msg_id:
        reply = session.client.get_shell_msg(timeout=60)
    assert reply["content"]["status"] == "error"  # the kernel gave up on the silent board
    first = []
    while True:
        try:
            msg = session.client.get_iopub_msg(timeout=1)
        except Exception:
            break
        if msg["msg_type"] == "stream" and msg["parent_header"].get("msg_id") == msg_id:
            first.append(msg["content"]["text"])
    os.kill(server.process.pid, signal.SIGCONT)
    time.sleep(4)  # the cell goes on and ends on the board
    cell = session.run("print('next')")
    assert cell.status == "ok", cell.error
    text = "".join(first) + cell.stream()
    lines = [line for line in text.splitlines() if line.startswith("line ")]
    assert lines == [f"line {i}" for i in range(30)], text
    assert EARLIER in cell.stream("stderr")
    assert cell.stream().endswith("next\n")
    assert {"text/plain": "'first done'"} in [d["data"] for d in cell.of_type("display_data")]


def test_a_cell_sent_while_the_board_was_stopped_shows_its_output_in_the_next_cell(stalling):
    session, server = stalling
    assert session.run("1 + 1").result == {"text/plain": "2"}
    os.kill(server.process.pid, signal.SIGSTOP)
    late = session.run("print('ran late')", timeout=60)
    assert late.status == "error"
    os.kill(server.process.pid, signal.SIGCONT)
    time.sleep(2)
    cell = session.run("print('next')")
    assert cell.status == "ok", cell.error
    assert cell.stream() == "ran late\nnext\n"
    assert EARLIER in cell.stream("stderr")
    assert session.run("print('again')").stream() == "again\n"  # delivered once
