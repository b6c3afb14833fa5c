"""ipykernel's own tests/test_message_spec.py, unchanged, against this kernel with a board behind it.

Those tests start the native kernel (`python3`) through jupyter_client; our kernelspec is installed
under that name in a temporary JUPYTER_PATH prefix, with a board server on 127.0.0.1 behind it. They
run in a pytest of their own (one kernel for the module, as they are written), without their
conftest.py (fixtures for in-process kernels, which need pytest-asyncio).
"""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest
from helpers import start_board
from ipykernel_suite import ipykernel_tests

# The one allowed failure: kernel_info_reply names this kernel and its version, not IPython's
# ("implementation": "rpyc_ikernel" 0.1.0, below the 2.1 the check wants).
IMPLEMENTATION_CHECK = "bad version: "
MAY_FAIL = "test_kernel_info_request"


@pytest.mark.timeout(600)
def test_ipykernel_message_spec_passes(tmp_path):
    tests = ipykernel_tests()
    prefix = tmp_path / "prefix"
    subprocess.run(
        [sys.executable, "-m", "rpyc_ikernel.install", "--prefix", str(prefix), "--name", "python3"],
        check=True,
        capture_output=True,
    )
    board = start_board()
    report = tmp_path / "report.xml"
    env = dict(os.environ)
    env["JUPYTER_PATH"] = str(prefix / "share" / "jupyter")
    env["RPYC_IKERNEL_HOST"] = "127.0.0.1"
    env["RPYC_IKERNEL_PORT"] = str(board.port)
    env.pop("PYTHONPATH", None)
    try:
        # The module twice, on one kernel: jupyter_client's start-up may leave extra kernel_info replies
        # that the first tests check (flush_channels) and find our version in; the second round has
        # none left, so there every check but the implementation one must pass.
        spec = str(tests / "test_message_spec.py")
        run = subprocess.run(
            [sys.executable, "-m", "pytest", "--noconftest", "-p", "no:cacheprovider", "-q"]
            + ["--keep-duplicates", "--junitxml", str(report), "-o", "junit_family=xunit1", spec, spec],
            cwd=tests.parent,
            env=env,
            capture_output=True,
            text=True,
            timeout=540,
        )
    finally:
        board.stop()
    rounds: list[dict] = [{}, {}]  # test name -> failure text ("" when it passed), per round
    for case in ET.parse(report).getroot().iter("testcase"):
        bad = case.find("failure")
        bad = case.find("error") if bad is None else bad
        text = "" if bad is None else (bad.get("message") or "") + (bad.text or "")
        first, second = rounds
        (second if case.get("name") in first else first)[case.get("name")] = text
    first, second = rounds
    passed = sorted(name for name, text in second.items() if not text)
    print(f"ipykernel test_message_spec (second round): {len(passed)} of {len(second)} passed")
    assert len(second) >= 20 and len(second) == len(first), run.stdout[-3000:]
    first_failures = {name for name, text in first.items() if text and IMPLEMENTATION_CHECK not in text}
    assert not first_failures, (sorted(first_failures), run.stdout[-6000:])
    second_failures = {name for name, text in second.items() if text and name != MAY_FAIL}
    assert not second_failures, (sorted(second_failures), run.stdout[-6000:])
    assert IMPLEMENTATION_CHECK in second[MAY_FAIL] or not second[MAY_FAIL]
