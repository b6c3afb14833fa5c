"""Completion with a big namespace: 20,000 names and a module of 5,000 attributes, against stock ipykernel.

    .venv/bin/python benchmarks/completion.py           # loopback and a 100 ms link (about a minute)
    .venv/bin/python benchmarks/completion.py --quick   # fewer repeats

A board server on 127.0.0.1 and a real rpyc kernel (jupyter_client); the 100 ms profile puts the link
emulator (tests/linkemu.py) between them. The same namespace is built in the stock kernel (`python3`),
whose figures are the reference. Each figure is the median time from complete_request to its reply.
Goal (issue 16): at most one round trip + 15 ms.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

from common import Kernel, bench_environment

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
from linkemu import LinkEmulator  # noqa: E402

SETUP = """
import sys, types
globals().update({"name_%05d" % i: i for i in range(20000)})
bigmod = types.ModuleType("bigmod")
bigmod.__dict__.update({"attr_%04d" % i: i for i in range(5000)})
sys.modules["bigmod"] = bigmod
d = {"key_%d" % i: i for i in range(1000)}
def func(alpha, beta=1, *, gamma=2):
    return alpha
"""

TEXTS = [
    "name_1234",  # 1 match among 20,000 names
    "name_12",  # 100 matches
    "bigmod.attr_12",  # 10 matches among 5,000 attributes
    "bigmod.",  # all 5,000
    "from bigmod import attr_0",
    "import o",
    'd["key_1',
    "func(1, be",
]
GOAL_EXTRA = 0.015


def complete_time(kernel: Kernel, text: str) -> float:
    started = time.perf_counter()
    msg_id = kernel.client.complete(text, len(text))
    while True:
        reply = kernel.client.shell_channel.get_msg(timeout=60)
        if reply["parent_header"].get("msg_id") == msg_id:
            break
    elapsed = time.perf_counter() - started
    if reply["content"]["status"] != "ok" or not reply["content"]["matches"]:
        raise RuntimeError(f"{kernel.name}: no completion for {text!r}: {reply['content']}")
    return elapsed


def measure(kernel: Kernel, repeats: int) -> dict:
    kernel.execute(SETUP)
    for text in TEXTS:
        complete_time(kernel, text)  # warm: module listing, first imports of the completer
    return {text: statistics.median(complete_time(kernel, text) for _ in range(repeats)) for text in TEXTS}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    repeats = 3 if args.quick else 9
    with bench_environment() as board:
        stock = Kernel("python3")
        stock.start()
        try:
            reference = measure(stock, repeats)
        finally:
            stock.stop()
        results = {}
        for rtt in (0.0, 0.1):
            link = LinkEmulator(board.port, rtt=rtt) if rtt else None
            os.environ["RPYC_IKERNEL_PORT"] = str(link.port if link else board.port)
            kernel = Kernel("rpyc")
            kernel.start()
            try:
                results[rtt] = measure(kernel, repeats)
            finally:
                kernel.stop()
                if link is not None:
                    link.close()
    print("\n## Completion: 20,000 names, a module of 5,000 attributes (median ms)\n")
    print("| text | stock ipykernel | rpyc loopback | rpyc 100 ms link | link - RTT | goal <= RTT + 15 ms |")
    print("| --- | ---: | ---: | ---: | ---: | --- |")
    for text in TEXTS:
        link_time = results[0.1][text]
        ok = link_time - 0.1 <= GOAL_EXTRA
        print(
            f"| `{text}` | {reference[text] * 1000:.1f} | {results[0.0][text] * 1000:.1f}"
            f" | {link_time * 1000:.1f} | {(link_time - 0.1) * 1000:.1f} | {'PASS' if ok else 'MISS'} |"
        )


if __name__ == "__main__":
    main()
