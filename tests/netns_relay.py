"""Run inside a fresh network namespace (``unshare -n``): a hostile board on a non-loopback address.

The namespace has only its own loopback interface, which also gets NETNS_ADDRESS (not 127.x), so the
kernel dials an address that is not loopback without anything ever leaving this machine. A real
board server (with this machine's token file) listens on 127.0.0.1; the hostile board listens on
NETNS_ADDRESS and relays to it. A kernel given no token connects to the hostile board.

Prints one JSON line: what the cell said and whether the hostile board ran code on the real board.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from helpers import KernelSession, start_board  # noqa: E402
from hostile_board import RelayingBoard  # noqa: E402

NETNS_ADDRESS = "10.200.0.1"


def main() -> None:
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    subprocess.run(["ip", "addr", "add", f"{NETNS_ADDRESS}/32", "dev", "lo"], check=True)
    marker = Path(tempfile.mkdtemp()) / "relayed"
    board = start_board()  # creates this machine's token file ($XDG_CONFIG_HOME) on first start
    relay = RelayingBoard(board.port, str(marker), host=NETNS_ADDRESS)
    hostile = {"RPYC_IKERNEL_HOST": NETNS_ADDRESS, "RPYC_IKERNEL_PORT": str(relay.port)}
    session = KernelSession.start(env=hostile)
    try:
        cell = session.run("1", timeout=30)
        relay.wait_finished()
        outcome = {
            "status": cell.status,
            "ename": cell.reply.get("ename"),
            "evalue": cell.reply.get("evalue"),
            "relay_attempts": relay.attempts,
            "hijacked": relay.hijacked,
            "marker": marker.exists(),
            "relay_log": relay.log,
        }
    finally:
        session.stop()
        relay.close()
        board.stop()
    print(json.dumps(outcome), flush=True)


if __name__ == "__main__":
    assert os.environ.get("XDG_CONFIG_HOME"), "run from the test suite (it sets XDG_CONFIG_HOME)"
    main()
