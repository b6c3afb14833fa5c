"""Kernel start: seconds from launching the kernel process to its first kernel_info_reply.

The rpyc kernel connects to the board on its first cell, not at start, so this is the kernel alone.
Goal (issue 6): the rpyc kernel's median is at most 1.3x stock ipykernel's.
"""

from __future__ import annotations

from common import RPYC, STOCK, Kernel, Row, bench_environment, median, print_report

REPEATS = 11


def start_once(name: str) -> float:
    kernel = Kernel(name)
    try:
        return kernel.start()
    finally:
        kernel.stop()


def measure(repeats: int = REPEATS) -> list[Row]:
    for name in (RPYC, STOCK):  # warm the file cache; not counted
        start_once(name)
    timings: dict[str, list[float]] = {RPYC: [], STOCK: []}
    for _ in range(repeats):
        for name in (RPYC, STOCK):
            timings[name].append(start_once(name))
    rpyc_s, stock_s = (median(timings[name]) for name in (RPYC, STOCK))
    return [
        Row.at_most(
            "kernel start -> first kernel_info_reply, median; vs stock ipykernel", rpyc_s, stock_s, "s", 1.3
        )
    ]


def main() -> None:
    with bench_environment():
        print_report("Startup", measure())


if __name__ == "__main__":
    main()
