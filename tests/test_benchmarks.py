"""The benchmarks still run (in a tiny size), so `make bench` does not rot while the kernel changes.

Only that they work and report sane figures is checked here: timings on a shared CI machine are
too noisy to hold against the goals; `make bench` does that.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

import latency  # noqa: E402
import memory  # noqa: E402
import startup  # noqa: E402
import throughput  # noqa: E402
from common import bench_environment, format_table  # noqa: E402


def test_every_benchmark_runs_and_reports_a_row():
    with bench_environment():
        rows = latency.measure(samples=5)
        rows += startup.measure(repeats=1)
        rows += throughput.measure(repeats=1, lines=2000)
        memory_rows, notes = memory.measure(repeats=1)
        rows += memory_rows
    assert len(rows) == 6  # memory.py also measures server.py run alone as a script
    assert all(row.rpyc > 0 and row.stock > 0 and row.ratio > 0 for row in rows)
    table = format_table(rows)
    assert table.count("\n") == len(rows) + 1 and "USS" in notes[0]


def test_links_benchmark_runs_in_its_quick_size():
    import links

    results = links.run([links.Profile(20, 20)], links.Sizes.quick(), log=lambda text: None)
    (figures,) = results
    assert not figures.notes, figures.notes
    for key in (
        "connect",
        "1+1",
        "raw eval",
        "print",
        "fps",
        "interrupt",
        "completion",
        "upload",
        "download",
    ):
        assert figures[key] is not None and figures[key] > 0, key
    assert figures["1+1"] >= 0.02  # a 20 ms RTT link: no cell is faster than one round trip
    assert "20 ms, 20 Mbit/s" in links.table(results)


def test_tls_benchmark_runs_in_a_tiny_size():
    import tls

    results = tls.measure(samples=3, lines=500, repeats=1, seconds=1.0)
    assert len(results) == 5
    assert all(with_tls > 0 and without > 0 for with_tls, without, _ in results.values())
    trips = results["round trips of a connect (after TCP connect)"]
    assert trips[0] >= trips[1]  # TLS adds its own handshake's round trips
    assert tls.table(results).count("\n") == len(results) + 1


def test_debugger_benchmark_runs_in_a_tiny_size():
    import debugger

    rows, notes = debugger.measure(steps=20_000, repeats=1)
    assert len(rows) == 3 and all(row.rpyc > 0 for row in rows)
    assert "a step (next -> stopped event)" in notes[1] and "100 ms round trips" in notes[2]
