"""How fast Kernel > Interrupt stops a cell: rpyc_ikernel (our server, plain rpyc) vs stock ipykernel.

For each kernel and each busy cell (a pure-Python loop, time.sleep(60)) it measures the time from the
interrupt request (jupyter_client's interrupt_kernel, i.e. SIGINT to the kernel) to the cell's
execute_reply with KeyboardInterrupt. Also: how long a completion takes while such a cell runs, sent to
a kernel subshell. Everything runs here, on 127.0.0.1, in this one run; ratios are against the stock
ipykernel ("python3" kernel) measured in the same run.

    .venv/bin/python benchmarks/interrupt.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from helpers import KernelSession, install_kernelspec, interrupt_after, start_board  # noqa: E402

CELLS = {
    "cpu loop": "spins = 0\nwhile True:\n    spins += 1",
    "time.sleep(60)": "import time\ntime.sleep(60)",
}
PLAIN_BOARD = Path(__file__).resolve().parent.parent / "tests" / "plain_board.py"


def time_interrupt(kernel: KernelSession, code: str, delay: float = 0.8) -> float:
    """Seconds from the interrupt request to the KeyboardInterrupt reply of a running cell."""
    sent = interrupt_after(kernel.manager, delay)
    cell = kernel.run(code, timeout=120)
    elapsed = time.monotonic() - sent["at"]
    if cell.reply.get("ename") != "KeyboardInterrupt":
        raise RuntimeError(f"cell was not interrupted: {cell.reply}")
    return elapsed


def time_completion_during(kernel: KernelSession, subshell: str, code: str) -> float:
    """Seconds for a subshell's complete_request while `code` runs on the main shell."""
    kernel.run("marker_for_completion = 1")
    cell_id = kernel.client.execute(code)
    time.sleep(0.8)
    start = time.monotonic()
    msg_id = kernel.send("complete_request", {"code": "marker_for", "cursor_pos": 10}, subshell_id=subshell)
    reply = kernel.wait_reply(msg_id, timeout=30)["content"]
    elapsed = time.monotonic() - start
    kernel.manager.interrupt_kernel()
    kernel.wait_reply(cell_id, timeout=30)
    if reply["matches"] != ["marker_for_completion"]:
        raise RuntimeError(f"unexpected completion: {reply}")
    return elapsed


def measure(name: str, kernel: KernelSession, repeat: int) -> dict:
    results = {}
    subshell = kernel.create_subshell()
    for label, code in CELLS.items():
        results[("interrupt", label)] = [time_interrupt(kernel, code) for _ in range(repeat)]
        results[("complete", label)] = [time_completion_during(kernel, subshell, code) for _ in range(repeat)]
        print(f"  {name:<28} {label:<16} done", file=sys.stderr)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="runs per measurement (default 5)")
    args = parser.parse_args()

    prefix = tempfile.TemporaryDirectory()
    install_kernelspec(Path(prefix.name))
    ours = start_board()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    plain = start_board(command=[sys.executable, str(PLAIN_BOARD)], cwd=Path(prefix.name), env=env)
    setups = [
        ("stock ipykernel (baseline)", lambda: KernelSession.start(kernel_name="python3")),
        ("rpyc_ikernel, our server", lambda: KernelSession.start(board_port=ours.port)),
        ("rpyc_ikernel, plain server", lambda: KernelSession.start(board_port=plain.port)),
    ]
    table = {}
    try:
        for name, start in setups:
            kernel = start()
            try:
                table[name] = measure(name, kernel, args.repeat)
            finally:
                kernel.stop()
    finally:
        ours.stop()
        plain.stop()
        prefix.cleanup()

    baseline = table[setups[0][0]]
    print(f"\nmedian (max) of {args.repeat} runs, seconds; ratio = median / stock ipykernel's median\n")
    for what, title in (
        ("interrupt", "interrupt request -> KeyboardInterrupt reply"),
        ("complete", "completion from a subshell while the cell runs"),
    ):
        print(title)
        print(f"  {'kernel':<28} {'cell':<16} {'median':>8} {'max':>8} {'ratio':>7}")
        for name, results in table.items():
            for label in CELLS:
                runs = results[(what, label)]
                median = statistics.median(runs)
                ratio = median / statistics.median(baseline[(what, label)])
                print(f"  {name:<28} {label:<16} {median:8.3f} {max(runs):8.3f} {ratio:6.1f}x")
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
