"""One cell on many boards (issue 18.4): N board servers on 127.0.0.1 (default 50), one rpyc kernel.

Measured in one run, on this machine:
- the cell on each board alone (the kernel's one-board path, one board after the other): the slowest;
- the same cell on all N boards at once (a group of self.on(...)), goal: <= 1.5 x slowest + 1 s;
- the kernel's memory (RSS, USS) and threads with a group of 1, 10, 25 and N boards (idle, and at the
  busiest moment of a cell), against the kernel on one board (the baseline).
The cell is I/O-bound like reading a sensor: it prints a line every 0.2 s for 1 s. Only loopback is used.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "benchmarks"))

from common import Kernel  # noqa: E402
from helpers import install_kernelspec, stop_process  # noqa: E402

CELL = "import time\nfor i in range(5):\n    print('reading', i)\n    time.sleep(0.2)\n"
GOAL_FACTOR, GOAL_EXTRA = 1.5, 1.0


def distinct_ports(count: int) -> list[int]:
    """count free loopback ports, all different (held open together while they are picked)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def start_servers(count: int, log_dir: Path, servers: list) -> None:
    """count board servers on loopback ports, started at once (the first alone: it makes the token);
    appended to `servers` as (process, port) as they start, so the caller can stop them whatever happens.
    A server whose port another program took meanwhile is started again on another port."""

    def launch(port: int) -> None:
        with (log_dir / f"board-{port}.log").open("w") as log:
            argv = [sys.executable, "-m", "rpyc_ikernel.server", "--host", "127.0.0.1", "--port", str(port)]
            process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
        servers.append((process, port))

    def listening(process: subprocess.Popen, port: int) -> bool:
        log = log_dir / f"board-{port}.log"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and process.poll() is None:
            if "listening on" in log.read_text(errors="replace"):
                return True
            time.sleep(0.05)
        return False

    ports = distinct_ports(count)
    launch(ports[0])
    if not listening(*servers[0]):
        raise RuntimeError(f"the first board server did not start: see {log_dir}")
    for port in ports[1:]:
        launch(port)
    for process, port in list(servers):
        while not listening(process, port):
            stop_process(process)
            servers.remove((process, port))
            launch(distinct_ports(1)[0])
            process, port = servers[-1]


def footprint(pid: int) -> tuple[float, float, int]:
    """RSS and USS in MiB, and the thread count, of a process and its children."""
    process = psutil.Process(pid)
    info = process.memory_full_info()
    return info.rss / 2**20, info.uss / 2**20, process.num_threads()


def busiest_threads(pid: int, stop: threading.Event, seen: list) -> None:
    process = psutil.Process(pid)
    while not stop.is_set():
        try:
            seen.append(process.num_threads())
        except psutil.Error:
            return
        time.sleep(0.02)


def timed_cell(kernel: Kernel, code: str) -> tuple[float, int, str]:
    """Seconds from send to idle, the most threads the kernel had meanwhile, and the stdout."""
    stop, seen = threading.Event(), []
    sampler = threading.Thread(target=busiest_threads, args=(kernel.pid, stop, seen), daemon=True)
    sampler.start()
    try:
        elapsed, out = kernel.execute(code)
    finally:
        stop.set()
        sampler.join()
    return elapsed, max(seen, default=0), out


def group(ports: list[int]) -> str:
    return ", ".join(f'"b{i:02d}=127.0.0.1:{port}"' for i, port in enumerate(ports))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--boards", type=int, default=50)
    args = parser.parse_args()
    count = args.boards
    work = Path(tempfile.mkdtemp(prefix="rpyc-bench-fleet-"))
    os.environ["XDG_CONFIG_HOME"] = str(work / "config")  # the servers' token, read by the kernel
    install_kernelspec(work / "prefix")
    started = time.monotonic()
    servers: list = []
    kernel = Kernel("rpyc")
    try:
        start_servers(count, work, servers)
        print(f"{count} board servers started in {time.monotonic() - started:.1f} s", flush=True)
        ports = [port for _, port in servers]
        os.environ["RPYC_IKERNEL_HOST"], os.environ["RPYC_IKERNEL_PORT"] = "127.0.0.1", str(ports[0])
        kernel.start()
        kernel.execute("1")  # connected to its board
        kernel.execute(CELL)
        base_rss, base_uss, base_threads = footprint(kernel.pid)
        _, base_busy, _ = timed_cell(kernel, CELL)
        singles = []
        for port in ports:  # each board alone, through the one-board path
            kernel.execute(f'# exec(self.connect_remote("127.0.0.1", port={port}))')
            elapsed, _, out = timed_cell(kernel, CELL)
            assert out.count("reading") == 5, out
            singles.append(elapsed)
        kernel.execute(f'# exec(self.connect_remote("127.0.0.1", port={ports[0]}))')
        rows = []
        for size in sorted({1, min(10, count), min(25, count), count}):
            connect_started = time.perf_counter()
            kernel.execute(f"# exec(self.on({group(ports[:size])}))")
            connect = time.perf_counter() - connect_started
            kernel.execute(CELL)  # every board has run a cell of the group once
            elapsed, busy, out = timed_cell(kernel, CELL)
            assert out.count("] reading") == 5 * size, out
            rss, uss, threads = footprint(kernel.pid)
            rows.append((size, connect, elapsed, rss, uss, threads, busy))
        kernel.execute("# exec(self.on())")
        magic = "%%boards " + group(ports).replace('"', "").replace(",", "") + "\n" + CELL
        one_off, _, out = timed_cell(kernel, magic)  # connects every board for this cell, then closes
        assert out.count("] reading") == 5 * count, out
    finally:
        kernel.stop()
        for process, _ in servers:
            process.terminate()
        for process, _ in servers:
            stop_process(process)
        shutil.rmtree(work, ignore_errors=True)
    slowest = max(singles)
    goal = GOAL_FACTOR * slowest + GOAL_EXTRA
    everything = rows[-1][2]
    print(f"\ncell: {CELL!r}")
    print(
        f"one board at a time: median {sorted(singles)[len(singles) // 2]:.3f} s, slowest {slowest:.3f} s"
        f" (of {count})"
    )
    print(f"a %%boards cell on all {count} (each board connected for it): {one_off:.3f} s")
    verdict = "PASS" if everything <= goal else "MISS"
    print(
        f"all {count} at once: {everything:.3f} s = {everything / slowest:.2f}x the slowest single board;"
        f" goal <= {GOAL_FACTOR:g} x {slowest:.3f} + {GOAL_EXTRA:g} = {goal:.3f} s: {verdict}\n"
    )
    print(
        "| boards | self.on() | cell | kernel RSS | USS | +USS per board | threads idle | threads in a cell |"
    )
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    print(
        f"| 1 (one-board path) | | {singles[0]:.2f} s | {base_rss:.1f} MiB | {base_uss:.1f} MiB | |"
        f" {base_threads} | {base_busy} |"
    )
    for size, connect, elapsed, rss, uss, threads, busy in rows:
        per_board = (uss - base_uss) / size
        print(
            f"| {size} | {connect:.2f} s | {elapsed:.2f} s | {rss:.1f} MiB | {uss:.1f} MiB"
            f" | {per_board * 1024:.0f} KiB | {threads} | {busy} |"
        )
    return 0 if everything <= goal else 1


if __name__ == "__main__":
    sys.exit(main())
