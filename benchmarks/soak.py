"""Soak: many cells and forced reconnects in one kernel; nothing lost, nothing leaking.

    python benchmarks/soak.py                   # full size: 2,000 cells, 200 reconnects, 50 MB of output
    python benchmarks/soak.py --cells 200 --reconnect-every 10 --output-mb 5    # what CI runs

A real board server and a real kernel on 127.0.0.1; the kernel reaches the board through a proxy that
cuts every connection every N cells. Each cell prints a numbered line and returns its number, so a lost
or reordered output is caught. Memory, threads and open sockets of the kernel and the board server are
measured after a warm-up and at the end; the run fails when they grow beyond the stated bounds.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from helpers import KernelSession, install_kernelspec, start_board  # noqa: E402
from proxy import Proxy  # noqa: E402

RSS_GROWTH_BOUND_MB = 40  # kernel or board server, after warm-up
THREAD_GROWTH_BOUND = 3
SOCKET_GROWTH_BOUND = 3


def footprint(pid: int) -> dict:
    process = psutil.Process(pid)
    sockets = [c for c in process.net_connections(kind="tcp") if c.status != psutil.CONN_LISTEN]
    return {
        "rss_mb": process.memory_info().rss / 2**20,
        "threads": process.num_threads(),
        "sockets": len(sockets),
    }


def kernel_pid(session: KernelSession) -> int:
    return session.manager.provisioner.process.pid


def soak(cells: int, reconnect_every: int, output_mb: float) -> dict:
    """Run the soak; returns the measurements and a list of failures (empty when all bounds hold)."""
    import tempfile

    failures = []
    with tempfile.TemporaryDirectory() as prefix:
        install_kernelspec(Path(prefix))
        board = start_board()
        proxy = Proxy(board.port)
        session = KernelSession.start(
            board_port=proxy.port, env={"RPYC_IKERNEL_FORWARD": f"127.0.0.1:{board.port}"}
        )
        try:
            for warm in range(20):
                session.run(f"print({warm})")
            before = {"kernel": footprint(kernel_pid(session)), "board": footprint(board.process.pid)}
            reconnects = 0
            started = time.monotonic()
            for number in range(cells):
                if reconnect_every and number and number % reconnect_every == 0:
                    reconnects += proxy.drop_all() > 0
                cell = session.run(f"print('line', {number})\n{number}")
                if cell.stream() != f"line {number}\n" or cell.result != {"text/plain": str(number)}:
                    failures.append(f"cell {number}: got {cell.stream()!r} / {cell.result!r}")
            cells_seconds = time.monotonic() - started

            line = "x" * 99  # 100 bytes with the newline
            count = int(output_mb * 2**20 / 100)
            started = time.monotonic()
            cell = session.run(f"for i in range({count}):\n    print('%09d' % i, {line[:90]!r})", timeout=600)
            output_seconds = time.monotonic() - started
            text = cell.stream()
            expected = "".join(f"{i:09d} {line[:90]}\n" for i in range(count))
            if text != expected:
                failures.append(
                    f"printed output: {len(text)} characters arrived of {len(expected)}, or out of order"
                )

            time.sleep(1.0)  # let closed connections' threads finish
            after = {"kernel": footprint(kernel_pid(session)), "board": footprint(board.process.pid)}
        finally:
            session.stop()
            proxy.close()
            board.stop()
    for side in ("kernel", "board"):
        growth = after[side]["rss_mb"] - before[side]["rss_mb"]
        if growth > RSS_GROWTH_BOUND_MB:
            failures.append(f"{side} memory grew {growth:.1f} MB (bound {RSS_GROWTH_BOUND_MB} MB)")
        if after[side]["threads"] - before[side]["threads"] > THREAD_GROWTH_BOUND:
            failures.append(f"{side} threads {before[side]['threads']} -> {after[side]['threads']}")
        if after[side]["sockets"] - before[side]["sockets"] > SOCKET_GROWTH_BOUND:
            failures.append(f"{side} sockets {before[side]['sockets']} -> {after[side]['sockets']}")
    return {
        "cells": cells,
        "reconnects": reconnects,
        "cells_per_second": cells / cells_seconds,
        "output_mb": output_mb,
        "output_mb_per_second": output_mb / output_seconds,
        "before": before,
        "after": after,
        "failures": failures,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=2000)
    parser.add_argument("--reconnect-every", type=int, default=10)
    parser.add_argument("--output-mb", type=float, default=50)
    args = parser.parse_args()
    report = soak(args.cells, args.reconnect_every, args.output_mb)
    print(json.dumps(report, indent=1))
    print(
        f"\n{report['cells']} cells, {report['reconnects']} forced reconnects:"
        f" {report['cells_per_second']:.0f} cells/s; {report['output_mb']:.0f} MB printed at"
        f" {report['output_mb_per_second']:.1f} MB/s"
    )
    for side in ("kernel", "board"):
        b, a = report["before"][side], report["after"][side]
        print(
            f"{side:7s} RSS {b['rss_mb']:.1f} -> {a['rss_mb']:.1f} MB,"
            f" threads {b['threads']} -> {a['threads']},"
            f" sockets {b['sockets']} -> {a['sockets']}"
        )
    print("PASS" if not report["failures"] else "FAIL:\n  " + "\n  ".join(report["failures"]))
    return 0 if not report["failures"] else 1


if __name__ == "__main__":
    sys.exit(main())
