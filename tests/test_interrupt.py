"""Kernel > Interrupt stops board code, and the session (its variables, its link) stays usable.

The issue's bounds are 1 s for a pure-Python loop and 2 s for time.sleep(60) on our server; tests
allow twice that, because two shared cores are slow and busy. benchmarks/interrupt.py measures them.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from helpers import KernelSession, interrupt_after

SLACK = 2.0
BUSY_CELLS = {
    "cpu-loop": ("spins = 0\nwhile True:\n    spins += 1", 1.0),
    "sleep": ("import time\ntime.sleep(60)", 2.0),
}


def run_and_interrupt(kernel: KernelSession, code: str, after: float = 1.0, **run_options):
    """Run code, interrupt the kernel `after` seconds in; (cell, seconds from interrupt to reply)."""
    sent = interrupt_after(kernel.manager, after)
    cell = kernel.run(code, timeout=90, **run_options)
    return cell, time.monotonic() - sent["at"]


def link_identity(kernel: KernelSession) -> str:
    """Which rpyc connection the kernel's board link uses (a reconnect would change it)."""
    kernel.run("None")  # a kernel connects on its first board cell, which may not have run yet
    cell = kernel.run("# exec(print(id(self.board._link.conn)))")
    assert cell.status == "ok", cell.error
    return cell.stream()


def assert_interrupted(cell, elapsed: float, limit: float) -> None:
    assert cell.status == "error"
    assert cell.reply["ename"] == "KeyboardInterrupt"
    assert cell.error["traceback"][-1] == "KeyboardInterrupt"
    assert elapsed < limit, f"interrupt took {elapsed:.2f} s (limit {limit} s)"


@pytest.mark.parametrize("kind", list(BUSY_CELLS))
def test_interrupt_stops_board_code_on_our_server(ours, kind):
    code, bound = BUSY_CELLS[kind]
    ours.run("kept = 'still here'")
    cell, elapsed = run_and_interrupt(ours, code)
    assert_interrupted(cell, elapsed, bound * SLACK)
    assert ours.run("kept").result == {"text/plain": "'still here'"}
    assert ours.run("print('next cell')").stream() == "next cell\n"


@pytest.mark.parametrize("kind", list(BUSY_CELLS))
def test_interrupt_on_a_plain_board_keeps_the_connection(plain, kind):
    code, bound = BUSY_CELLS[kind]
    plain.run("kept = 'still here'")
    link = link_identity(plain)
    cell, elapsed = run_and_interrupt(plain, code)
    assert_interrupted(cell, elapsed, bound * SLACK)
    assert plain.run("kept").result == {"text/plain": "'still here'"}
    assert link_identity(plain) == link


def test_blocking_call_on_a_plain_board_ends_then_the_interrupt_lands(plain):
    """Best effort: a blocking C call other than sleep finishes first; the link survives."""
    link = link_identity(plain)
    cell, elapsed = run_and_interrupt(
        plain, "import select\nselect.select([], [], [], 3)\nprint('not reached')", after=0.5
    )
    assert cell.reply["ename"] == "KeyboardInterrupt"
    assert "not reached" not in cell.stream()
    assert elapsed < 2.5 + 2.0
    assert link_identity(plain) == link
    assert plain.run("1 + 1").result == {"text/plain": "2"}


def test_code_that_catches_the_interrupt_can_clean_up(plain):
    cell, _ = run_and_interrupt(
        plain,
        "import time\n"
        "try:\n"
        "    time.sleep(60)\n"
        "except KeyboardInterrupt:\n"
        "    time.sleep(0.2)\n"
        "    print('cleaned up')\n",
    )
    assert cell.status == "ok"
    assert cell.stream() == "cleaned up\n"


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc to look for the child process")
def test_interrupt_stops_a_shell_command_and_its_process(ours):
    cell, elapsed = run_and_interrupt(ours, "!sleep 61.25")
    assert_interrupted(cell, elapsed, 2.0 * SLACK)
    leftovers = ours.run(
        "import os\n"
        "def cmdline(pid):\n"
        "    try:\n"
        "        return open('/proc/%s/cmdline' % pid, 'rb').read()\n"
        "    except OSError:\n"
        "        return b''\n"
        "[p for p in os.listdir('/proc') if p.isdigit() and cmdline(p) == b'sleep\\x0061.25\\x00']"
    )
    assert leftovers.result == {"text/plain": "[]"}


def test_interrupt_while_input_waits(ours):
    prompts = []
    cell, elapsed = run_and_interrupt(
        ours,
        "answer = input('Never answered: ')",
        allow_stdin=True,
        stdin_hook=lambda msg: prompts.append(msg["content"]["prompt"]),
    )
    assert prompts == ["Never answered: "]
    assert_interrupted(cell, elapsed, 1.0 * SLACK)
    assert ours.run("'answer' in dir()").result == {"text/plain": "False"}


def test_interrupt_with_no_cell_running_is_harmless(ours):
    ours.manager.interrupt_kernel()
    time.sleep(0.5)
    assert ours.run("print('fine')").stream() == "fine\n"


PRINTING_LOOP = "i = 0\nwhile True:\n    i += 1\n    print(i)"


@pytest.mark.parametrize("board_kind", ["ours", "plain"])
def test_interrupting_a_printing_loop_never_wedges_the_session(request, board_kind):
    """The interrupt may arrive while print() holds the session's lock: it must wait for the release."""
    kernel = request.getfixturevalue(board_kind)
    link = link_identity(kernel)
    for attempt in range(12):
        cell, elapsed = run_and_interrupt(kernel, PRINTING_LOOP, after=0.3 + 0.05 * attempt)
        assert cell.reply["ename"] == "KeyboardInterrupt", (attempt, cell.reply)
        assert elapsed < 5
        after = kernel.run(f"print('after', {attempt})", timeout=20)
        assert after.stream() == f"after {attempt}\n"
    assert link_identity(kernel) == link


# Cleanup code that holds the GIL (a C call: here libc sleep through ctypes.PyDLL) keeps a loaded or
# slow board from answering anything for a while after it took the interrupt.
SLOW_CLEANUP = (
    "import ctypes, time\n"
    "try:\n"
    "    while True:\n"
    "        pass\n"
    "except KeyboardInterrupt:\n"
    "    time.sleep(0.5)\n"  # the board answers the interrupt request first
    "    ctypes.PyDLL(None).sleep(4)\n"
    "    raise"
)


@pytest.mark.parametrize("board_kind", ["ours", "plain"])
def test_a_board_that_answered_the_interrupt_is_waited_for_while_it_is_silent(request, board_kind):
    """A board silent for seconds after it took the interrupt is alive, only slow: the cell ends with
    the board's KeyboardInterrupt, not with a lost link (the interrupted wait gives up on boards that
    did not answer the interrupt, tests/test_reliability.py)."""
    kernel = request.getfixturevalue(board_kind)
    link = link_identity(kernel)
    cell, elapsed = run_and_interrupt(kernel, SLOW_CLEANUP)
    assert cell.reply["ename"] == "KeyboardInterrupt", cell.reply
    assert elapsed >= 4
    assert kernel.run("print('next')").stream() == "next\n"
    assert link_identity(kernel) == link


def test_a_late_interrupt_does_not_hit_the_next_cell(ours):
    from rpyc_ikernel.board import Address, Board

    cell, _ = run_and_interrupt(ours, "import time\ntime.sleep(30)", after=0.5)
    assert cell.reply["ename"] == "KeyboardInterrupt"
    facts = ours.run("# exec(print(self.session_id, self.board.address.port, self.board.running_cell_id))")
    session_id, port, ended_cell = facts.stream().split()
    # a second link to the same session delivers an interrupt meant for the cell that already ended
    late = Board(Address("127.0.0.1", int(port)), session_id)
    timer = threading.Timer(0.5, lambda: late.connect() and late.interrupt(ended_cell))
    timer.start()
    try:
        survived = ours.run("import time\ntime.sleep(1.5)\nprint('survived')", timeout=30)
    finally:
        timer.join()
        late.close()
    assert survived.stream() == "survived\n"
