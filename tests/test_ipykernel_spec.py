"""ipykernel's own tests/test_message_spec.py, unchanged, against this kernel with a board behind it.

Those tests start the native kernel (`python3`) through jupyter_client; our kernelspec is installed
under that name in a temporary JUPYTER_PATH prefix, with a board server on 127.0.0.1 behind it. They
run in a pytest of their own (one kernel for the module, as they are written), without their
conftest.py (fixtures for in-process kernels, which need pytest-asyncio).
"""

from __future__ import annotations

import pytest
from ipykernel_suite import run_against_our_kernel

# The one allowed failure: kernel_info_reply names this kernel and its version, not IPython's
# ("implementation": "rpyc_ikernel" 0.1.0, below the 2.1 the check wants).
IMPLEMENTATION_CHECK = "bad version: "
MAY_FAIL = "test_kernel_info_request"


@pytest.mark.timeout(600)
def test_ipykernel_message_spec_passes(tmp_path):
    # The module twice, on one kernel: jupyter_client's start-up may leave extra kernel_info replies
    # that the first tests check (flush_channels) and find our version in; the second round has
    # none left, so there every check but the implementation one must pass.
    spec = "test_message_spec.py"
    cases, output = run_against_our_kernel(tmp_path, [spec, spec], "--keep-duplicates")
    rounds: list[dict] = [{}, {}]  # test name -> failure text ("" when it passed), per round
    for name, text, _ in cases:
        first, second = rounds
        (second if name in first else first)[name] = text
    first, second = rounds
    passed = sorted(name for name, text in second.items() if not text)
    print(f"ipykernel test_message_spec (second round): {len(passed)} of {len(second)} passed")
    assert len(second) >= 20 and len(second) == len(first), output[-3000:]
    first_failures = {name for name, text in first.items() if text and IMPLEMENTATION_CHECK not in text}
    assert not first_failures, (sorted(first_failures), output[-6000:])
    second_failures = {name for name, text in second.items() if text and name != MAY_FAIL}
    assert not second_failures, (sorted(second_failures), output[-6000:])
    assert IMPLEMENTATION_CHECK in second[MAY_FAIL] or not second[MAY_FAIL]
