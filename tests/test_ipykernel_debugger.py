"""ipykernel's own tests/test_debugger.py, unchanged, against this kernel with a board behind it.

Those tests start the native kernel (`python3`) through jupyter_client; our kernelspec is installed
under that name in a temporary JUPYTER_PATH prefix, with a board server on 127.0.0.1 behind it (as
test_ipykernel_spec.py does for test_message_spec.py). They run in a pytest of their own, without
their conftest.py (fixtures for in-process kernels). The board runs this venv's Python, so the
test that makes an IPython HTML object on the board finds IPython there.
"""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest
from helpers import start_board
from ipykernel_suite import ipykernel_tests


def run_ipykernel_test_file(name: str, tmp_path) -> tuple[set, dict, str]:
    """Run tests/<name> of ipykernel's sdist against our kernel: (passed, {failed: text}, output)."""
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
        run = subprocess.run(
            [sys.executable, "-m", "pytest", "--noconftest", "-p", "no:cacheprovider", "-q"]
            + ["--junitxml", str(report), "-o", "junit_family=xunit1", str(tests / name)],
            cwd=tests.parent,
            env=env,
            capture_output=True,
            text=True,
            timeout=540,
        )
    finally:
        board.stop()
    failed, passed = {}, set()
    for case in ET.parse(report).getroot().iter("testcase"):
        bad = case.find("failure")
        bad = case.find("error") if bad is None else bad
        if bad is None:
            if case.find("skipped") is None:
                passed.add(case.get("name"))
        else:
            failed[case.get("name")] = (bad.get("message") or "") + (bad.text or "")
    return passed, failed, run.stdout


@pytest.mark.timeout(600)
def test_ipykernel_debugger_tests_pass(tmp_path):
    pytest.importorskip("flaky")  # its tests rerun flaky ones with it (a test dependency)
    passed, failed, output = run_ipykernel_test_file("test_debugger.py", tmp_path)
    print(f"ipykernel test_debugger: {len(passed)} passed, {len(failed)} failed: {sorted(failed)}")
    assert not failed, output[-6000:]
    # every test that does something with the debugger ran (the stock kernel with debugpy passes all)
    assert {"test_stop_on_breakpoint", "test_rich_inspect_at_breakpoint", "test_copy_to_globals"} <= passed
    assert len(passed) >= 11, output[-3000:]
