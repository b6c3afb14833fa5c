"""benchmarks/board_memory.py still runs (one sample, no ipykernel board), and its split is sane."""

from __future__ import annotations

import sys

import boards
import pytest
from helpers import REPO

sys.path.insert(0, str(REPO / "benchmarks"))
import board_memory  # noqa: E402


def test_board_memory_benchmark_runs(monkeypatch):
    armv7 = boards.board_named("bookworm-armhf")
    if not armv7.built():
        pytest.skip("board bookworm-armhf is not built (make test-boards builds it)")
    monkeypatch.setattr(board_memory, "SETTLE", 1.0)
    result = board_memory.measure(repeats=1, with_ipykernel=False)
    rows = result["rows"]
    floor = rows["qemu-arm running /bin/sleep (the emulator's floor)"]
    bare = rows["bare python3 (sleeping)"]
    ours = rows["our server.py, after a cell"]
    assert all(0 < row.guest < row.rss for row in rows.values())
    assert floor.guest < bare.guest < ours.guest
    assert "our server.py, after a cell" in board_memory.report(result)
