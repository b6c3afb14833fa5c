"""ipykernel's own tests/test_debugger.py, unchanged, against this kernel with a board behind it.

Those tests start the native kernel (`python3`) through jupyter_client; our kernelspec is installed
under that name in a temporary JUPYTER_PATH prefix, with a board server on 127.0.0.1 behind it (as
test_ipykernel_spec.py does for test_message_spec.py). They run in a pytest of their own, without
their conftest.py (fixtures for in-process kernels). The board runs this venv's Python, so the
test that makes an IPython HTML object on the board finds IPython there.
"""

from __future__ import annotations

import pytest
from ipykernel_suite import run_against_our_kernel


def run_ipykernel_test_file(name: str, tmp_path) -> tuple[set, dict, str]:
    """Run tests/<name> of ipykernel's sdist against our kernel: (passed, {failed: text}, output)."""
    cases, output = run_against_our_kernel(tmp_path, [name])
    passed = {case for case, text, skipped in cases if not text and not skipped}
    failed = {case: text for case, text, _ in cases if text}
    return passed, failed, output


@pytest.mark.timeout(600)
def test_ipykernel_debugger_tests_pass(tmp_path):
    pytest.importorskip("flaky")  # its tests rerun flaky ones with it (a test dependency)
    passed, failed, output = run_ipykernel_test_file("test_debugger.py", tmp_path)
    print(f"ipykernel test_debugger: {len(passed)} passed, {len(failed)} failed: {sorted(failed)}")
    assert not failed, output[-6000:]
    # every test that does something with the debugger ran (the stock kernel with debugpy passes all)
    assert {"test_stop_on_breakpoint", "test_rich_inspect_at_breakpoint", "test_copy_to_globals"} <= passed
    assert len(passed) >= 11, output[-3000:]
