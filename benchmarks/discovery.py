"""How long finding boards takes: N real board servers (default 50), each in a network namespace of
its own on one private bridge (tests/netns_lan.py), found from another namespace. Needs root and `ip`.

Prints two figures: the time until a browser (python-zeroconf, as rpyc_ikernel.discovery uses it) has
every board's address, port and details; and the wall time of `python3 -m rpyc_ikernel.install
--discover` (which browses for a fixed 2 s) and how many boards it listed. Goal (issue 18): all 50 in
<= 3 s. Nothing is sent outside the namespaces.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from netns_lan import Lan, why_not  # noqa: E402

GOAL = 3.0  # seconds to list 50 boards

BROWSE_UNTIL_ALL = """
import sys, time
from zeroconf import ServiceBrowser, ServiceInfo, ServiceStateChange, Zeroconf
TYPE = "_rpyc-ikernel._tcp.local."
wanted = int(sys.argv[1])
zc = Zeroconf()
names = set()
def changed(zeroconf, service_type, name, state_change):
    names.add(name)
started = time.monotonic()
ServiceBrowser(zc, TYPE, handlers=[changed])
resolved = set()
while len(resolved) < wanted and time.monotonic() - started < 30:
    for name in list(names - resolved):
        info = ServiceInfo(TYPE, name)
        if info.load_from_cache(zc) and info.parsed_addresses() and info.properties.get(b"python"):
            resolved.add(name)
    time.sleep(0.01)
print("%.3f %d" % (time.monotonic() - started, len(resolved)), flush=True)
zc.close()
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--boards", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    reason = why_not()
    if reason:
        print(f"discovery benchmark skipped: {reason}")
        return 0
    count = args.boards
    lan = Lan(count + 1)
    browser = count
    servers = []
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    try:
        started = time.monotonic()
        for i in range(count):
            argv = [sys.executable, "-m", "rpyc_ikernel.server", "--host", "0.0.0.0", "--no-auth"]
            argv += ["--name", f"board-{i:02d}", "--quiet"]
            servers.append(
                subprocess.Popen(
                    lan.command(i, argv),
                    stdout=subprocess.PIPE,
                    stderr=subprocess.DEVNULL,
                    text=True,
                    env=env,
                )
            )
        for server in servers:  # each prints its "announced" line once it is on the network
            for line in server.stdout:
                if "announced on the network" in line:
                    break
        print(f"{count} board servers up and announced in {time.monotonic() - started:.1f} s")
        for round_ in range(args.rounds):
            done = subprocess.run(
                lan.command(browser, [sys.executable, "-c", BROWSE_UNTIL_ALL, str(count)]),
                capture_output=True,
                text=True,
                timeout=60,
            )
            seconds, found = done.stdout.split()
            started = time.monotonic()
            listed = subprocess.run(
                lan.command(browser, [sys.executable, "-m", "rpyc_ikernel.install", "--discover"]),
                capture_output=True,
                text=True,
                timeout=60,
                env=env,
            )
            wall = time.monotonic() - started
            rows = sum(1 for line in listed.stdout.splitlines() if line.startswith("board-"))
            print(
                f"round {round_ + 1}: a browser resolved {found}/{count} boards in {float(seconds):.2f} s;"
                f" `install --discover` listed {rows}/{count} in {wall:.2f} s (process start included)"
            )
        verdict = "met" if float(seconds) <= GOAL and rows == count else "NOT met"
        print(f"goal: {count} boards listed in <= {GOAL:g} s: {verdict}")
    finally:
        for server in servers:
            server.terminate()
        for server in servers:
            try:
                server.wait(10)
            except subprocess.TimeoutExpired:
                server.kill()
        lan.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
