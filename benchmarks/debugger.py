"""What the board debugger costs: a pure-Python loop with the debugger off, on (no breakpoint in the
running code) and off again, timed on the board in one run; plus a step and a Variables expansion.

The loop runs in a cell; the board times it itself (time.perf_counter around the loop), so the link
does not count. "on" is JupyterLab's state after you open the Debugger panel and set a breakpoint in
another cell: initialize, attach, a breakpoint in a function that the loop never calls. The second
loop calls a function each step: every call is seen by the debugger's call hook (the worst case for
code without breakpoints). Goals (issue 17): on >= 0.35x of off on Python 3.7-3.11 (bdb with
sys.settrace), >= 0.8x on 3.12+ (sys.monitoring); off again 1.0x (nothing stays installed).

The board is this Python's server by default; --board-python runs rpyc_ikernel/server.py alone under
another Python (a venv with rpyc, e.g. the pyenv-3.12 test board's), each one measured in the same run:

    .venv/bin/python benchmarks/debugger.py [--steps 10000000] [--repeat 3]
        [--board-python this] [--board-python .boards/pyenv-3.12/venv/bin/python ...]
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import sys
import time

from common import REPO, Row, bench_environment, format_table, running_kernel, start_board
from delay_proxy import DelayProxy

SLOW_RTT = 0.1  # seconds: the slow link of issue 17's step goal

LOOP = (
    "import time\nstarted = time.perf_counter()\ntotal = 0\n"
    "for i in range({steps}):\n    total += i\nprint(time.perf_counter() - started)\n"
)
CALLS = (
    "import time\ndef step(i):\n    return i\nstarted = time.perf_counter()\ntotal = 0\n"
    "for i in range({steps}):\n    total += step(i)\nprint(time.perf_counter() - started)\n"
)
ELSEWHERE = "def never_called():\n    return 1\n"  # the breakpoint's cell
STEPPED = "a = 1\nb = list(range(50))\nc = 3\nd = 4\n"
_seq = itertools.count(1)


def debug(kernel, command: str, arguments: dict | None = None) -> dict:
    """One debug_request on the control channel; its reply content."""
    content = {"type": "request", "seq": next(_seq), "command": command, "arguments": arguments or {}}
    msg = kernel.client.session.msg("debug_request", content)
    kernel.client.control_channel.send(msg)
    while True:
        reply = kernel.client.control_channel.get_msg(timeout=60)
        if reply["parent_header"].get("msg_id") == msg["header"]["msg_id"]:
            return reply["content"]


def wait_stopped(kernel, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        msg = kernel.client.iopub_channel.get_msg(timeout=max(0.01, deadline - time.monotonic()))
        if msg["msg_type"] == "debug_event" and msg["content"].get("event") == "stopped":
            return


def loop_seconds(kernel, code: str, steps: int, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        _, printed = kernel.execute(code.format(steps=steps), timeout=600)
        times.append(float(printed.split()[-1]))
    return statistics.median(times)


def start_debugging(kernel) -> None:
    debug(kernel, "initialize", {"clientID": "bench", "adapterID": "", "linesStartAt1": True})
    debug(kernel, "attach")
    path = debug(kernel, "dumpCell", {"code": ELSEWHERE})["body"]["sourcePath"]
    kernel.execute(ELSEWHERE)
    debug(kernel, "setBreakpoints", {"source": {"path": path}, "breakpoints": [{"line": 2}]})
    debug(kernel, "configurationDone")


def step_costs(kernel, repeats: int) -> tuple[float, float]:
    """Median seconds of a `next` (request to the next stopped event) and of a Variables expansion."""
    path = debug(kernel, "dumpCell", {"code": STEPPED})["body"]["sourcePath"]
    debug(kernel, "setBreakpoints", {"source": {"path": path}, "breakpoints": [{"line": 1}]})
    steps, expansions = [], []
    for _ in range(repeats):
        msg_id = kernel.client.execute(STEPPED)
        wait_stopped(kernel)
        started = time.perf_counter()
        debug(kernel, "next", {"threadId": 1})
        wait_stopped(kernel)
        steps.append(time.perf_counter() - started)
        frame = debug(kernel, "stackTrace", {"threadId": 1})["body"]["stackFrames"][0]["id"]
        scopes = debug(kernel, "scopes", {"frameId": frame})["body"]["scopes"]
        started = time.perf_counter()
        debug(kernel, "variables", {"variablesReference": scopes[0]["variablesReference"]})
        expansions.append(time.perf_counter() - started)
        debug(kernel, "continue", {"threadId": 1})
        kernel.take_reply(msg_id, 60)
    debug(kernel, "setBreakpoints", {"source": {"path": path}, "breakpoints": []})
    return statistics.median(steps), statistics.median(expansions)


def slow_link_step_costs(repeats: int) -> tuple[float, float]:
    """step_costs through a proxy that delays each direction by half of SLOW_RTT."""
    proxy = DelayProxy(int(os.environ["RPYC_IKERNEL_PORT"]), delay=SLOW_RTT / 2)
    saved = os.environ["RPYC_IKERNEL_PORT"]
    os.environ["RPYC_IKERNEL_PORT"] = str(proxy.port)
    os.environ["RPYC_IKERNEL_FORWARD"] = f"127.0.0.1:{saved}"  # the proxy is ours, not a relay
    try:
        with running_kernel("rpyc") as kernel:
            kernel.execute("1")
            start_debugging(kernel)
            return step_costs(kernel, repeats)
    finally:
        os.environ["RPYC_IKERNEL_PORT"] = saved
        os.environ.pop("RPYC_IKERNEL_FORWARD", None)
        proxy.close()


def board_python_version(kernel) -> tuple[int, int]:
    _, printed = kernel.execute("import sys\nprint('%d.%d' % sys.version_info[:2])")
    major, minor = printed.split()[-1].split(".")
    return int(major), int(minor)


def measure(
    steps: int = 10_000_000, repeats: int = 3, board_python: str | None = None
) -> tuple[list[Row], list[str]]:
    """Rounds interleave the three states, so a machine that gets busier affects them alike: a kernel
    that never debugged (the reference), one with the debugger on, the same one after disconnect;
    each state's fastest round counts.
    board_python: the Python that runs the board's server.py (default: ours, python -m)."""
    with bench_environment() as default_board:
        board = default_board
        if board_python:
            env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
            server_py = str(REPO / "rpyc_ikernel" / "server.py")
            board = start_board(command=[board_python, server_py, "--host", "127.0.0.1"], env=env)
            os.environ["RPYC_IKERNEL_PORT"] = str(board.port)
        try:
            return _measure(steps, repeats)
        finally:
            if board is not default_board:
                board.stop()


def _measure(steps: int, repeats: int) -> tuple[list[Row], list[str]]:
    never, on, after, never_calls, on_calls = [], [], [], [], []
    with running_kernel("rpyc") as kernel, running_kernel("rpyc") as reference:
        version = board_python_version(kernel)
        goal = 0.8 if version >= (3, 12) else 0.35
        for _ in range(repeats):
            never.append(loop_seconds(reference, LOOP, steps, 1))
            never_calls.append(loop_seconds(reference, CALLS, steps // 10, 1))
            start_debugging(kernel)
            on.append(loop_seconds(kernel, LOOP, steps, 1))
            on_calls.append(loop_seconds(kernel, CALLS, steps // 10, 1))
            debug(kernel, "disconnect", {"restart": False})
            after.append(loop_seconds(kernel, LOOP, steps, 1))
        start_debugging(kernel)
        step, expansion = step_costs(kernel, repeats)
        debug(kernel, "disconnect", {"restart": False})
        slow_step, slow_expansion = slow_link_step_costs(repeats)
    # The fastest round of each state: on a shared machine the others' load only ever slows a round
    # down, so the minimum is the least disturbed figure (as timeit's); the medians are in the notes.
    median_ratio = statistics.median(never) / statistics.median(on)
    median_again = statistics.median(never) / statistics.median(after)
    off, on, again = min(never), min(on), min(after)
    off_calls, on_calls = min(never_calls), min(on_calls)
    rows = [
        Row.at_least(f"loop of {steps:,} steps, debugger on (speed vs off)", off / on, 1.0, "x", goal),
        Row.at_least(
            f"loop of {steps // 10:,} calls, debugger on (speed vs off)", off_calls / on_calls, 1.0, "x", 0
        ),
        Row.at_least("same loop after the debugger was on (speed vs never on)", off / again, 1.0, "x", 0.9),
    ]
    how = "sys.monitoring" if version >= (3, 12) else "bdb with sys.settrace"
    notes = [
        f"loop: {off:.2f} s off, {on:.2f} s on, {again:.2f} s after disconnect; with a call per step:"
        f" {off_calls:.2f} s off, {on_calls:.2f} s on (board's Python {version[0]}.{version[1]}: {how};"
        f" fastest of {repeats} rounds; medians: on {median_ratio:.2f}x, after {median_again:.2f}x).",
        f"a step (next -> stopped event): {step * 1000:.1f} ms;"
        f" a Variables expansion: {expansion * 1000:.1f} ms (loopback).",
        f"through a link with {SLOW_RTT * 1000:.0f} ms round trips: a step {slow_step * 1000:.0f} ms,"
        f" a Variables expansion {slow_expansion * 1000:.0f} ms.",
    ]
    return rows, notes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--board-python",
        action="append",
        help="a Python (with rpyc) to run the board's server.py; repeat for several; 'this' is ours",
    )
    args = parser.parse_args()
    for board_python in args.board_python or ["this"]:
        rows, notes = measure(args.steps, args.repeat, None if board_python == "this" else board_python)
        print(f"\n## board: {board_python}\n")
        print(format_table(rows))
        for note in notes:
            print(f"\n{note}")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
