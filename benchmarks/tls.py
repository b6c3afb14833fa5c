"""What TLS costs: the same board server and kernel, with TLS (the pairing string) and without (the token).

Two board servers on 127.0.0.1 share one config dir (so one token): one started as users start it (it
makes its own certificate and serves TLS to kernels that pin it), one with --no-tls. One kernel pairs
with the first (TOKEN@sha256:FINGERPRINT), one gives the bare token to the second. In the same run:
1+1 (send to iopub idle, median), print throughput (lines/s), live image frames/s (display() of a
changing JPEG buffer), round trips of a connect (counted on a loopback proxy, TCP connect not
included) and each board server's resident memory after its kernel ran all of the above.

Run: ``.venv/bin/python benchmarks/tls.py`` (about a minute). Figures are ratios TLS / plain.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

from jupyter_client.manager import KernelManager

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "benchmarks"))

from common import MAKE_FRAMES  # noqa: E402
from helpers import install_kernelspec, start_board  # noqa: E402
from proxy import Proxy  # noqa: E402

from rpyc_ikernel.board import Address, Board, Credentials  # noqa: E402

SERVER = [sys.executable, "-m", "rpyc_ikernel.server", "--host", "127.0.0.1"]
FRAME_SETUP = (
    "import io, time\nfrom PIL import Image, ImageDraw\n"
    + MAKE_FRAMES
    + "frames = make_frames()\nimg_buffer = io.BytesIO(frames[0])\n"
)
FRAME_CELL = """# exec(self.display("img_buffer", interval=0.005))
_end, _n = time.monotonic() + {seconds}, 0
while time.monotonic() < _end:
    _n += 1
    img_buffer = io.BytesIO(frames[_n % len(frames)] + _n.to_bytes(4, "big"))
    time.sleep(0.005)
"""


class Kernel:
    """A real rpyc kernel through jupyter_client, with its own environment."""

    def __init__(self, env: dict) -> None:
        self.manager = KernelManager(kernel_name="rpyc")
        self.manager.start_kernel(env={**os.environ, **env})
        self.client = self.manager.client()
        self.client.start_channels()
        self.client.wait_for_ready(timeout=60)

    def run(self, code: str, timeout: float = 120) -> tuple[float, list]:
        """(seconds from send to iopub idle, iopub messages of the cell)."""
        started = time.perf_counter()
        msg_id = self.client.execute(code)
        messages = []
        while True:
            msg = self.client.get_iopub_msg(timeout=timeout)
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            if msg["msg_type"] == "error":
                raise RuntimeError(f"{code[:40]!r} failed: {msg['content']['evalue']}")
            if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                elapsed = time.perf_counter() - started
                break
            messages.append(msg)
        while self.client.get_shell_msg(timeout=timeout)["parent_header"].get("msg_id") != msg_id:
            pass
        return elapsed, messages

    def stop(self) -> None:
        self.client.stop_channels()
        self.manager.shutdown_kernel(now=True)


def resident_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))


def connect_round_trips(port: int, credentials: Credentials) -> int:
    """Round trips (board-to-kernel turns) of one connect with the agent already on the board."""
    proxy = Proxy(port)
    try:
        forward = credentials.overridden(forward=f"127.0.0.1:{port}")
        board = Board(Address("127.0.0.1", proxy.port), uuid.uuid4().hex, forward)
        board.connect()  # sends the agent
        board.close()
        first = len(proxy.directions)
        board = Board(Address("127.0.0.1", proxy.port), uuid.uuid4().hex, forward)
        board.connect()
        time.sleep(0.3)
        board.close()
        log = proxy.directions[first]
        return sum(1 for i, way in enumerate(log) if way == "board" and (i == 0 or log[i - 1] != "board"))
    finally:
        proxy.close()


def measure(samples: int = 100, lines: int = 50_000, repeats: int = 3, seconds: float = 3.0) -> dict:
    """{metric: (with TLS, without TLS, unit)} measured in one run."""
    saved = {name: os.environ.get(name) for name in ("XDG_CONFIG_HOME", "JUPYTER_PATH")}
    results: dict = {}
    with tempfile.TemporaryDirectory(prefix="rpyc-tls-bench-") as tmp:
        os.environ["XDG_CONFIG_HOME"] = str(Path(tmp, "config"))
        install_kernelspec(Path(tmp, "prefix"))
        servers = {"tls": start_board(command=SERVER), "plain": start_board(command=[*SERVER, "--no-tls"])}
        kernels: dict = {}
        try:
            lines_out = [line.strip() for line in servers["tls"].output().splitlines() if "@sha256:" in line]
            pairing = lines_out[0]
            token = pairing.partition("@sha256:")[0]
            tokens = {"tls": pairing, "plain": token}
            for name, server in servers.items():
                env = {"RPYC_IKERNEL_PORT": str(server.port), "RPYC_IKERNEL_TOKEN": tokens[name]}
                kernels[name] = Kernel(env)
                kernels[name].run("1")
                kernels[name].run(FRAME_SETUP)
            add = results.setdefault
            one_plus_one = {name: [] for name in kernels}
            for sample in range(samples):
                for name in sorted(kernels, reverse=sample % 2 == 1):  # alternate which goes first
                    one_plus_one[name].append(kernels[name].run("1+1")[0] * 1000)
            add(
                "1+1, send to idle (median)",
                tuple(statistics.median(one_plus_one[n]) for n in kernels) + ("ms",),
            )
            code = f"for i in range({lines}):\n    print('line', i)"
            rates = {name: [] for name in kernels}
            for repeat in range(repeats):
                for name in sorted(kernels, reverse=repeat % 2 == 1):
                    elapsed, messages = kernels[name].run(code)
                    text = "".join(m["content"]["text"] for m in messages if m["msg_type"] == "stream")
                    if text.count("\n") != lines:
                        raise RuntimeError(f"{name}: {text.count(chr(10))} of {lines} lines arrived")
                    rates[name].append(lines / elapsed)
            add(
                f"print {lines:,} lines (median rate)",
                tuple(statistics.median(rates[n]) for n in kernels) + ("lines/s",),
            )
            fps = {}
            for name, kernel in kernels.items():
                _, messages = kernel.run(FRAME_CELL.format(seconds=seconds))
                updates = [m for m in messages if m["msg_type"] == "update_display_data"]
                fps[name] = len(updates) / seconds
            add("live image, 320x240 JPEG (interval 0.005 s)", (fps["tls"], fps["plain"], "frames/s"))
            trips = {
                name: connect_round_trips(servers[name].port, Credentials(token=tokens[name]))
                for name in kernels
            }
            add("round trips of a connect (after TCP connect)", (trips["tls"], trips["plain"], ""))
            memory = {name: resident_kib(server.process.pid) / 1024 for name, server in servers.items()}
            add("board server resident memory after all this", (memory["tls"], memory["plain"], "MiB"))
        finally:
            for kernel in kernels.values():
                kernel.stop()
            for server in servers.values():
                server.stop()
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
    return results


def table(results: dict) -> str:
    lines = ["| metric | with TLS | without TLS | TLS / plain |", "| --- | ---: | ---: | ---: |"]
    for metric, (tls, plain, unit) in results.items():
        lines.append(f"| {metric} | {tls:,.3g} {unit} | {plain:,.3g} {unit} | {tls / plain:.2f}x |")
    return "\n".join(lines)


def main() -> int:
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    print(f"{os.cpu_count()} CPUs, load average {load} at the start; everything on 127.0.0.1", flush=True)
    print(table(measure()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
