"""Memory of the board server after a kernel connected and ran a cell, against two references.

What a small board pays for running cells: the resident set (RSS) and the memory only that process
holds (USS, which leaves out shared library pages) of ``python -m rpyc_ikernel.server``, compared with
a bare ``python -c "import time; time.sleep(60)"`` and with a stock ipykernel process that ran the same
cell. All three use this interpreter. Goals (issue 6): RSS at most 2x bare python, at most 0.4x ipykernel.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import psutil
from common import RPYC, STOCK, Row, bench_environment, median, print_report, running_kernel, start_board

CELL = "total = sum(range(1000))\nprint('board says', total)"
REPEATS = 3
SETTLE = 0.5  # seconds to let a process finish what it started before it is measured


def footprint(pid: int) -> tuple[float, float]:
    """(RSS, USS) of a process in MiB."""
    info = psutil.Process(pid).memory_full_info()
    return info.rss / 2**20, info.uss / 2**20


def board_after_a_cell() -> tuple[float, float]:
    """A fresh board server, one rpyc kernel connected to it that ran CELL."""
    board = start_board()
    saved = os.environ["RPYC_IKERNEL_PORT"]
    os.environ["RPYC_IKERNEL_PORT"] = str(board.port)
    try:
        with running_kernel(RPYC) as kernel:
            kernel.execute(CELL)
            time.sleep(SETTLE)
            return footprint(board.process.pid)
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
    board_rss, board_uss = median_footprint(board_after_a_cell, repeats)
    bare_rss, bare_uss = median_footprint(bare_python, repeats)
    kernel_rss, kernel_uss = median_footprint(stock_ipykernel, repeats)
    rows = [
        Row.at_most("board server RSS after a cell; vs bare python", board_rss, bare_rss, "MiB", 2.0),
        Row.at_most("board server RSS after a cell; vs stock ipykernel", board_rss, kernel_rss, "MiB", 0.4),
    ]
    notes = [
        f"USS (memory only that process holds): board server {board_uss:.1f} MiB,"
        f" bare python {bare_uss:.1f} MiB, stock ipykernel {kernel_uss:.1f} MiB."
    ]
    return rows, notes


def main() -> None:
    with bench_environment():
        rows, notes = measure()
        print_report("Memory", rows, notes)


if __name__ == "__main__":
    main()
