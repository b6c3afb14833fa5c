"""Memory on an emulated armv7 board: our server after a cell, against bare python and stock ipykernel there.

Every process runs on the same board (scripts/boards.py's Debian bookworm armhf root filesystem)
under qemu-arm, so each one's RSS includes the emulator: its own binary, heap and translated-code
cache, about 20-35 MB that a real armv7 board never pays. Two ways to take it out, both printed:

- *guest RSS*: qemu-arm places the whole 32-bit guest below 4 GiB and keeps its own memory above,
  so the resident pages of mappings below 4 GiB are what the armv7 program itself holds (its
  binaries, libraries, Python heap). That is what the same process would hold on a real board.
- *minus bare python*: the difference between two processes under the same emulator, where the
  emulator's share largely cancels.

    .venv/bin/python benchmarks/board_memory.py            # builds the boards it needs (root), ~2-4 min
    .venv/bin/python benchmarks/board_memory.py --no-ipykernel

Processes: qemu running /bin/sleep (the emulator's floor), `python3 -c "import time; time.sleep(..)"`,
the README's plain rpyc script and our server.py, each after a kernel connected and ran CELL, and
Debian's stock ipykernel (python3-ipykernel) after the same CELL, on a board that has it.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "scripts"))

import boards  # noqa: E402
from helpers import KernelSession, free_port, install_kernelspec, wait_for_port  # noqa: E402

CELL = "total = sum(range(1000))\nprint('board says', total)"
SETTLE = 5.0  # seconds for a process under emulation to finish what it started before it is measured
GUEST_LIMIT = 1 << 32  # qemu-arm maps the 32-bit guest below 4 GiB, the emulator above
TOKEN = "memory-benchmark-token"
SPREAD: list = []  # every sample, in order, for --json


@dataclass
class Footprint:
    rss: float  # MiB, the whole process (emulator + guest)
    guest: float  # MiB resident in mappings below 4 GiB: what the armv7 program holds


def footprint(pid: int) -> Footprint:
    """RSS of a qemu-arm process, whole and the guest's part, from /proc/PID/smaps."""
    total = guest = 0
    start = 0
    with open(f"/proc/{pid}/smaps") as smaps:
        for line in smaps:
            head = re.match(r"^([0-9a-f]+)-[0-9a-f]+ ", line)
            if head:
                start = int(head.group(1), 16)
            elif line.startswith("Rss:"):
                kib = int(line.split()[1])
                total += kib
                if start < GUEST_LIMIT:
                    guest += kib
    return Footprint(total / 1024, guest / 1024)


def measured(board: boards.Board, argv: list[str], after=None, env: dict | None = None) -> Footprint:
    """Start argv on the board; optionally run after(process) (e.g. a kernel's cell); measure; stop it."""
    process = board.popen(argv, env=env, stdout=open(os.devnull, "w"), stderr=open(os.devnull, "w"))
    try:
        context = after(process) if after else None
        time.sleep(SETTLE)
        result = footprint(boards.board_pid(process))
        if context is not None:
            context.stop()
        return result
    finally:
        boards.stop_process(process)


def server_after_a_cell(board: boards.Board, script: Path, extra: list[str], token: bool):
    """A function that starts `script` on the board, waits for its port and runs CELL through a kernel."""
    port = free_port()
    shutil.copy(script, board.host_path(board.home) / script.name)
    argv = ["python3", script.name, *extra, "--port", str(port)]

    def after(process):
        wait_for_port(port, 120)
        kernel = KernelSession.start(board_port=port, env={"RPYC_IKERNEL_TOKEN": TOKEN} if token else {})
        connect = kernel.run(f'# exec(self.connect_remote("127.0.0.1", port={port}, timeout=60))', timeout=90)
        cell = kernel.run(CELL, timeout=60)
        if connect.status != "ok" or cell.stream() != "board says 499500\n":
            raise RuntimeError(f"{script.name} on {board.name}: {connect.error or cell.error}")
        return kernel

    return argv, after


def stock_ipykernel_after_a_cell(board: boards.Board):
    """Debian's ipykernel on the board, a jupyter_client client on the host that runs CELL."""
    from jupyter_client import BlockingKernelClient
    from jupyter_client.connect import write_connection_file

    path = board.host_path(board.home) / "kernel-memory.json"
    write_connection_file(str(path), ip="127.0.0.1", key=os.urandom(16).hex().encode())
    argv = ["python3", "-m", "ipykernel_launcher", "-f", board.board_path(path)]

    class Client:
        def __init__(self) -> None:
            self.client = BlockingKernelClient(connection_file=str(path))
            self.client.load_connection_file()
            self.client.start_channels(hb=False)  # an emulated kernel starts too slowly for heartbeats

        def stop(self) -> None:
            self.client.stop_channels()

    def after(process):
        client = Client()
        client.client.wait_for_ready(timeout=180)
        chunks = []
        reply = client.client.execute_interactive(
            CELL, timeout=120, output_hook=lambda m: chunks.append(m["content"].get("text", ""))
        )
        if reply["content"]["status"] != "ok" or "board says 499500" not in "".join(chunks):
            raise RuntimeError(f"stock ipykernel on {board.name}: {reply['content']}")
        return client

    return argv, after


def median_of(sample, repeats: int) -> Footprint:
    samples = [sample() for _ in range(repeats)]
    SPREAD.append([vars(s) for s in samples])
    return Footprint(statistics.median(s.rss for s in samples), statistics.median(s.guest for s in samples))


def measure(repeats: int, with_ipykernel: bool) -> dict:
    board = boards.board_named("bookworm-armhf")
    wanted = [board] + ([boards.board_named("bookworm-armhf-ipykernel")] if with_ipykernel else [])
    boards.build_all(wanted)
    facts = board.known_facts()
    prefix = Path(tempfile.mkdtemp(prefix="rpyc-memory-"))
    install_kernelspec(prefix)
    rows = {}
    rows["qemu-arm running /bin/sleep (the emulator's floor)"] = median_of(
        lambda: measured(board, ["sleep", "600"]), repeats
    )
    rows["bare python3 (sleeping)"] = median_of(
        lambda: measured(board, ["python3", "-c", "import time; time.sleep(600)"]), repeats
    )
    plain = server_after_a_cell(board, REPO / "tests" / "plain_board.py", [], token=False)
    rows["README's plain rpyc server, after a cell"] = median_of(
        lambda: measured(board, plain[0], plain[1]), repeats
    )
    ours = server_after_a_cell(
        board, REPO / "rpyc_ikernel" / "server.py", ["--host", "127.0.0.1"], token=True
    )
    rows["our server.py, after a cell"] = median_of(
        lambda: measured(board, ours[0], ours[1], env={"RPYC_IKERNEL_TOKEN": TOKEN}), repeats
    )
    if with_ipykernel:
        ipyboard = boards.board_named("bookworm-armhf-ipykernel")
        stock = stock_ipykernel_after_a_cell(ipyboard)
        rows["stock ipykernel (Debian's), after a cell"] = median_of(
            lambda: measured(ipyboard, stock[0], stock[1]), repeats
        )
    return {"facts": facts, "rows": rows}


def report(result: dict) -> str:
    facts, rows = result["facts"], result["rows"]
    bare = rows["bare python3 (sleeping)"]
    lines = [
        f"armv7 board under qemu-arm: Debian bookworm armhf, Python {facts['python']}, rpyc {facts['rpyc']};"
        " medians; MiB.",
        "",
        "| process | RSS under qemu | guest RSS (the armv7 program) | guest RSS minus bare python |",
        "| --- | ---: | ---: | ---: |",
    ]
    for name, value in rows.items():
        delta = "" if name.startswith("qemu") else f"{value.guest - bare.guest:+.1f}"
        lines.append(f"| {name} | {value.rss:.1f} | {value.guest:.1f} | {delta} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-ipykernel", action="store_true", help="skip stock ipykernel (and its board)")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    result = measure(args.repeats, not args.no_ipykernel)
    print(report(result))
    if args.json:
        rows = {name: vars(value) for name, value in result["rows"].items()}
        data = {"facts": result["facts"], "rows": rows, "samples": SPREAD}
        Path(args.json).write_text(json.dumps(data, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
