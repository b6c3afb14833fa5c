"""The soak benchmark in reduced size: many cells and forced reconnects, no loss, no leaks."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

from soak import soak  # noqa: E402


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_soak_reduced(kernelspec_prefix):
    report = soak(cells=200, reconnect_every=10, output_mb=5)
    assert report["reconnects"] >= 15
    assert report["failures"] == []
