"""Memory of the board server after a kernel connected and ran a cell, against two references.

What a small board pays for running cells: the resident set (RSS) and the memory only that process
holds (USS, which leaves out shared library pages) of ``python -m rpyc_ikernel.server``, compared with
a bare ``python -c "import time; time.sleep(60)"`` and with a stock ipykernel process that ran the same
cell. All three use this interpreter. The server is also measured before the kernel connects, which
shows what the agent (and the connection) add, and as a board runs it: ``server.py`` copied alone into
an empty directory and started as a script. Goals (issue 10): RSS at most 1.6x bare python, at most
0.35x ipykernel.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
from common import RPYC, STOCK, Row, bench_environment, median, print_report, running_kernel, start_board

SERVER_FILE = Path(__file__).resolve().parent.parent / "rpyc_ikernel" / "server.py"

CELL = "total = sum(range(1000))\nprint('board says', total)"
REPEATS = 3
SETTLE = 0.5  # seconds to let a process finish what it started before it is measured


def footprint(pid: int) -> tuple[float, float]:
    """(RSS, USS) of a process in MiB."""
    info = psutil.Process(pid).memory_full_info()
    return info.rss / 2**20, info.uss / 2**20


def board_before_and_after_a_cell(alone: bool = False) -> tuple[tuple[float, float], tuple[float, float]]:
    """A fresh board server's footprint before a kernel connects, and after one ran CELL on it.

    alone: server.py copied into an empty directory and run as a script, as on a board."""
    if alone:
        with tempfile.TemporaryDirectory(prefix="rpyc-board-") as directory:
            shutil.copy(SERVER_FILE, directory)
            command = [sys.executable, "server.py", "--host", "127.0.0.1"]
            return _before_and_after(start_board(command=command, cwd=Path(directory)))
    return _before_and_after(start_board())


def _before_and_after(board) -> tuple[tuple[float, float], tuple[float, float]]:
    saved = os.environ["RPYC_IKERNEL_PORT"]
    os.environ["RPYC_IKERNEL_PORT"] = str(board.port)
    try:
        time.sleep(SETTLE)
        before = footprint(board.process.pid)
        with running_kernel(RPYC) as kernel:
            kernel.execute(CELL)
            time.sleep(SETTLE)
            return before, footprint(board.process.pid)
    finally:
        os.environ["RPYC_IKERNEL_PORT"] = saved
        board.stop()


def bare_python() -> tuple[float, float]:
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        time.sleep(SETTLE + 0.5)
        return footprint(process.pid)
    finally:
        process.kill()
        process.wait()


def stock_ipykernel() -> tuple[float, float]:
    with running_kernel(STOCK) as kernel:
        kernel.execute(CELL)
        time.sleep(SETTLE)
        return footprint(kernel.pid)


def median_footprint(sample, repeats: int) -> tuple[float, float]:
    """Median RSS and median USS over `repeats` fresh processes."""
    samples = [sample() for _ in range(repeats)]
    return median([rss for rss, _ in samples]), median([uss for _, uss in samples])


def measure(repeats: int = REPEATS) -> tuple[list[Row], list[str]]:
    boards = [board_before_and_after_a_cell() for _ in range(repeats)]
    idle_rss, idle_uss = (median([before[i] for before, _ in boards]) for i in (0, 1))
    board_rss, board_uss = (median([after[i] for _, after in boards]) for i in (0, 1))
    alone_rss = median([board_before_and_after_a_cell(alone=True)[1][0] for _ in range(repeats)])
    bare_rss, bare_uss = median_footprint(bare_python, repeats)
    kernel_rss, kernel_uss = median_footprint(stock_ipykernel, repeats)
    rows = [
        Row.at_most("board server RSS after a cell; vs bare python", board_rss, bare_rss, "MiB", 1.6),
        Row.at_most("board server RSS after a cell; vs stock ipykernel", board_rss, kernel_rss, "MiB", 0.35),
        Row.at_most(
            "server.py copied alone, run as a script: RSS after a cell; vs bare python",
            alone_rss,
            bare_rss,
            "MiB",
            1.6,
        ),
    ]
    notes = [
        f"USS (memory only that process holds): board server {board_uss:.1f} MiB,"
        f" bare python {bare_uss:.1f} MiB, stock ipykernel {kernel_uss:.1f} MiB.",
        f"Board server before the kernel connects: RSS {idle_rss:.1f} MiB, USS {idle_uss:.1f} MiB; the agent"
        f" and the connection add {board_rss - idle_rss:.1f} MiB RSS, {board_uss - idle_uss:.1f} MiB USS.",
    ]
    return rows, notes


def main() -> None:
    with bench_environment():
        rows, notes = measure()
        print_report("Memory", rows, notes)


if __name__ == "__main__":
    main()
