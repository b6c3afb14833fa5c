"""Every benchmark in one run, printed as one table (Markdown, as in the README's Performance section).

Run it with ``make bench`` (or ``.venv/bin/python benchmarks/run_all.py``). Each figure is measured
against its reference in this same run, on this machine; the run takes about two minutes.
"""

from __future__ import annotations

import os
import platform
import sys
import time

import latency
import memory
import rpyc
import startup
import throughput
from common import bench_environment, format_table


def machine() -> str:
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    return (
        f"Python {platform.python_version()}, rpyc {rpyc.__version__}, {os.cpu_count()} CPUs,"
        f" load average {load} at the start; everything on 127.0.0.1."
    )


def main() -> int:
    started = time.monotonic()
    print(machine(), flush=True)
    rows = []
    with bench_environment():
        for name, section in (("latency", latency), ("startup", startup), ("throughput", throughput)):
            print(f"measuring {name} ...", flush=True)
            rows += section.measure()
        print("measuring memory ...", flush=True)
        memory_rows, notes = memory.measure()
        rows += memory_rows
    print()
    print(format_table(rows))
    for note in notes:
        print(f"\n{note}")
    missed = sum(not row.passed for row in rows)
    print(f"\n{len(rows) - missed} of {len(rows)} goals met in {time.monotonic() - started:.0f} s.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
