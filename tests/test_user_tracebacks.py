"""A cell's error shows only the user's frames (like IPython): none of the agent's or the server's.

Our server interrupts a cell with a signal whose handler raises KeyboardInterrupt on top of the
user's frame; the agent runs the cell, routes input() and sleeps. None of that may show.
"""

from __future__ import annotations

import re
import threading
import time

import pytest
from helpers import KernelSession

FRAME = re.compile(r'^\s*File "(?P<file>[^"]+)", line \d+, in (?P<function>\S+)')


def frames(cell) -> list:
    """(file, function) of every frame the cell's traceback shows, outermost first."""
    found = []
    for entry in cell.error["traceback"]:
        for line in entry.splitlines():
            match = FRAME.match(line)
            if match:
                found.append((match["file"], match["function"]))
    return found


def interrupted(kernel: KernelSession, code: str, after: float = 1.0, **options):
    timer = threading.Timer(after, kernel.manager.interrupt_kernel)
    timer.start()
    try:
        return kernel.run(code, timeout=90, **options)
    finally:
        timer.cancel()


SLEEP_LOOP = "import time\ndef wait():\n    while True:\n        time.sleep(0.1)\nwait()"


@pytest.mark.parametrize("board_kind", ["ours", "plain"])
def test_an_interrupted_sleep_loop_shows_only_the_cells_frames(request, board_kind):
    kernel = request.getfixturevalue(board_kind)
    cell = interrupted(kernel, SLEEP_LOOP)
    assert cell.reply["ename"] == "KeyboardInterrupt"
    assert cell.error["traceback"][-1] == "KeyboardInterrupt"
    shown = frames(cell)
    assert [function for _, function in shown] == ["<module>", "wait"], cell.error["traceback"]
    assert all(re.fullmatch(r"<cell-\d+>", file) for file, _ in shown), shown
    assert "time.sleep(0.1)" in "\n".join(cell.error["traceback"])


def test_an_interrupted_busy_loop_shows_only_the_cells_frames(ours):
    cell = interrupted(ours, "spins = 0\nwhile True:\n    spins += 1")
    assert cell.reply["ename"] == "KeyboardInterrupt"
    shown = frames(cell)
    assert len(shown) == 1 and re.fullmatch(r"<cell-\d+>", shown[0][0]), cell.error["traceback"]


def test_an_interrupted_input_shows_only_the_cells_frame(ours):
    cell = interrupted(ours, "answer = input('never: ')", allow_stdin=True, stdin_hook=lambda msg: None)
    assert cell.reply["ename"] == "KeyboardInterrupt"
    shown = frames(cell)
    assert len(shown) == 1 and re.fullmatch(r"<cell-\d+>", shown[0][0]), cell.error["traceback"]


@pytest.mark.parametrize("board_kind", ["ours", "plain"])
def test_an_error_in_a_function_of_the_cell_shows_the_users_frames(request, board_kind):
    kernel = request.getfixturevalue(board_kind)
    cell = kernel.run("def ratio(x):\n    return 1 / x\n\nprint('before')\nratio(0)")
    assert cell.stream() == "before\n"
    assert cell.reply["ename"] == "ZeroDivisionError"
    shown = frames(cell)
    assert [function for _, function in shown] == ["<module>", "ratio"]
    assert all(re.fullmatch(r"<cell-\d+>", file) for file, _ in shown), shown
    assert cell.error["traceback"][-1] == "ZeroDivisionError: division by zero"


def test_library_frames_stay_and_chained_errors_are_cleaned_too(ours):
    """Frames of libraries the cell calls are the user's business (IPython shows them too)."""
    cell = ours.run(
        "import json\n"
        "def parse(text):\n"
        "    try:\n"
        "        return json.loads(text)\n"
        "    except ValueError as exc:\n"
        "        raise RuntimeError('bad input') from exc\n"
        "parse('{')"
    )
    assert cell.reply["ename"] == "RuntimeError"
    files = {file for file, _ in frames(cell)}
    assert any(file.endswith("json/decoder.py") for file in files), files
    assert not any("rpyc_ikernel" in file or "_rpyc_ikernel" in file for file in files), files


def test_a_helper_with_tracebackhide_is_left_out(ours):
    cell = ours.run(
        "def check(x):\n"
        "    __tracebackhide__ = True\n"
        "    if x < 0:\n"
        "        raise ValueError('negative')\n"
        "check(-1)"
    )
    assert cell.reply["ename"] == "ValueError"
    assert [function for _, function in frames(cell)] == ["<module>"]


def test_the_interrupted_cell_leaves_the_session_usable(ours):
    cell = interrupted(ours, SLEEP_LOOP, after=0.5)
    assert cell.reply["ename"] == "KeyboardInterrupt"
    started = time.monotonic()
    assert ours.run("print('next')").stream() == "next\n"
    assert time.monotonic() - started < 30
