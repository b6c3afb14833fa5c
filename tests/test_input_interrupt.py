"""Interrupting a cell that waits in input() gives KeyboardInterrupt, every time, also on a busy board.

The race (issue 13 part 5, seen once under load): on Ctrl-C the kernel interrupted the board's cell
and then answered the pending input() with "end of input"; when both arrived before the cell's
thread woke up, input() saw the answer first and raised EOFError. Here a thread on the board holds
the GIL most of the time (a long switch interval), so the cell's thread wakes up late, and other
processes load the machine's cores; the interrupt is sent the moment the prompt reaches the client.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
from helpers import KernelSession, start_board

ROUNDS = 20
GIL_HOG = (
    "import sys, threading\n"
    "sys.setswitchinterval(0.02)\n"
    "hog_running = True\n"
    "def hog():\n"
    "    n = 0\n"
    "    while hog_running:\n"
    "        n += 1\n"
    "threading.Thread(target=hog, daemon=True).start()\n"
)
HOG_STOP = "hog_running = False\nimport sys\nsys.setswitchinterval(0.005)"


@pytest.fixture()
def busy_board(kernelspec_prefix):
    """A kernel on a board server of its own whose process and machine are busy."""
    board = start_board()
    session = KernelSession.start(board_port=board.port)
    load = [
        subprocess.Popen([sys.executable, "-c", "while True: pass"], stdin=subprocess.DEVNULL)
        for _ in range(2)
    ]
    try:
        assert session.run(GIL_HOG).status == "ok"
        yield session
        session.run(HOG_STOP, timeout=60)
    finally:
        for process in load:
            process.kill()
            process.wait()
        session.stop()
        board.stop()


@pytest.mark.timeout(600)
def test_interrupting_input_always_raises_keyboard_interrupt(busy_board):
    outcomes = []
    for attempt in range(ROUNDS):
        prompts = []

        def interrupt_at_prompt(msg, prompts=prompts):
            prompts.append(msg["content"]["prompt"])
            busy_board.manager.interrupt_kernel()

        cell = busy_board.run(
            f"answer = input('round {attempt}: ')\nprint('not reached')",
            timeout=120,
            allow_stdin=True,
            stdin_hook=interrupt_at_prompt,
        )
        assert prompts == [f"round {attempt}: "]
        assert "not reached" not in cell.stream()
        outcomes.append(cell.reply.get("ename"))
    assert outcomes == ["KeyboardInterrupt"] * ROUNDS
    # the session is still usable, and a later input() is answered normally (no stale answer left)
    answered = busy_board.run(
        "print(input('name? '))",
        timeout=120,
        allow_stdin=True,
        stdin_hook=lambda msg: busy_board.client.input("Ada"),
    )
    assert answered.stream() == "Ada\n"


def test_code_that_catches_the_interrupt_can_ask_again(kernelspec_prefix, board):
    """After an interrupted input(), no leftover answer reaches the next input() of the same cell."""
    session = KernelSession.start(board_port=board.port)
    try:
        asked = []

        def hook(msg):
            asked.append(msg["content"]["prompt"])
            if len(asked) == 1:
                session.manager.interrupt_kernel()
            else:
                session.client.input("second answer")

        cell = session.run(
            "try:\n"
            "    input('first: ')\n"
            "except KeyboardInterrupt:\n"
            "    print('interrupted')\n"
            "print(input('second: '))",
            timeout=60,
            allow_stdin=True,
            stdin_hook=hook,
        )
        assert asked == ["first: ", "second: "]
        assert cell.status == "ok", cell.reply
        assert cell.stream() == "interrupted\nsecond answer\n"
    finally:
        session.stop()
