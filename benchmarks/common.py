"""Shared parts of the benchmarks: a loopback board, kernels by name, timed requests, the result table.

Every benchmark measures the rpyc kernel and stock ipykernel (kernelspec ``python3``) in the same run,
on the same interpreter, and reports the ratio against the goal from issue 6. Only 127.0.0.1 is used.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from queue import Empty

from jupyter_client.manager import KernelManager

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from helpers import BoardServer, install_kernelspec, launch_kernel, reply_to, start_board  # noqa: E402

RPYC = "rpyc"
STOCK = "python3"


@dataclass
class Row:
    """One line of a result table: a figure for each kernel, their ratio and the goal it is held to."""

    metric: str
    rpyc: float
    stock: float
    unit: str
    ratio: float
    goal: str
    passed: bool

    @classmethod
    def at_most(cls, metric: str, rpyc: float, stock: float, unit: str, limit: float) -> Row:
        """Lower is better (time, memory): ratio = rpyc / stock must be <= limit."""
        ratio = rpyc / stock
        return cls(metric, rpyc, stock, unit, ratio, f"<= {limit:g}x", ratio <= limit)

    @classmethod
    def at_least(cls, metric: str, rpyc: float, stock: float, unit: str, limit: float) -> Row:
        """Higher is better (throughput): ratio = rpyc / stock must be >= limit."""
        ratio = rpyc / stock
        return cls(metric, rpyc, stock, unit, ratio, f">= {limit:g}x", ratio >= limit)


def format_table(rows: list[Row]) -> str:
    """A Markdown table, so the same text goes to the terminal and into the README."""
    lines = [
        "| metric | rpyc_ikernel | reference | ratio | goal | result |",
        "| --- | ---: | ---: | ---: | --- | --- |",
    ]
    for row in rows:
        lines.append(
            f"| {row.metric} | {_figure(row.rpyc, row.unit)} | {_figure(row.stock, row.unit)}"
            f" | {row.ratio:.2f}x | {row.goal} | {'PASS' if row.passed else 'MISS'} |"
        )
    return "\n".join(lines)


def _figure(value: float, unit: str) -> str:
    if value >= 100:
        return f"{value:,.0f} {unit}"
    return f"{value:.3g} {unit}"


def median(values: list[float]) -> float:
    return statistics.median(values)


@contextmanager
def bench_environment() -> Iterator[BoardServer]:
    """The rpyc kernelspec in a temporary prefix and a board server on a free loopback port.

    Kernels started afterwards find the board through RPYC_IKERNEL_HOST/PORT in their environment.
    """
    saved = {
        name: os.environ.get(name) for name in ("JUPYTER_PATH", "RPYC_IKERNEL_HOST", "RPYC_IKERNEL_PORT")
    }
    with tempfile.TemporaryDirectory(prefix="rpyc-bench-") as prefix:
        install_kernelspec(Path(prefix))
        board = start_board()
        os.environ["RPYC_IKERNEL_HOST"] = "127.0.0.1"
        os.environ["RPYC_IKERNEL_PORT"] = str(board.port)
        try:
            yield board
        finally:
            board.stop()
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value


class Kernel:
    """A kernel started through jupyter_client (tests/helpers.py), with a blocking client and timed
    requests. Its output goes to a log file; a request that gets no answer raises with the log's tail."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.manager = KernelManager(kernel_name=name)
        self.client = None
        self.log = None

    def start(self, timeout: float = 60) -> float:
        """Start the kernel; return seconds from launch to the first kernel_info_reply."""
        started = time.perf_counter()
        self.manager, self.client, self.log = launch_kernel(self.name, dict(os.environ))
        msg_id = self.client.kernel_info()
        try:
            reply_to(self.client, msg_id, timeout)
        except TimeoutError:
            raise self._silent(f"sent no kernel_info_reply within {timeout} s") from None
        elapsed = time.perf_counter() - started
        # IOPub subscribes in the background: a cell sent before it has may lose all its output, its
        # idle status included (a first cell then waited forever). wait_for_ready sees IOPub through.
        try:
            self.client.wait_for_ready(timeout=timeout)
        except RuntimeError as exc:
            raise self._silent(f"is not ready: {exc}") from None
        return elapsed

    def _silent(self, what: str) -> TimeoutError:
        tail = self.log.tail(40) if self.log else ""
        return TimeoutError(f"kernel {self.name} {what}; its log ({self.log.path}):\n{tail}")

    @property
    def pid(self) -> int:
        return self.manager.provisioner.process.pid

    def execute(self, code: str, timeout: float = 120) -> tuple[float, str]:
        """Run code; return (seconds from send to iopub idle, the stdout text it printed)."""
        started = time.perf_counter()
        msg_id = self.client.execute(code)
        chunks = []
        iopub = self.client.iopub_channel
        deadline = time.monotonic() + timeout
        while True:
            try:
                msg = iopub.get_msg(timeout=max(0.01, deadline - time.monotonic()))
            except Empty:
                raise self._silent(f"did not finish {code[:40]!r} within {timeout} s") from None
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            kind = msg["msg_type"]
            if kind == "stream" and msg["content"]["name"] == "stdout":
                chunks.append(msg["content"]["text"])
            elif kind == "error":
                raise RuntimeError(f"{self.name}: {code!r} failed: {msg['content']['evalue']}")
            elif kind == "status" and msg["content"]["execution_state"] == "idle":
                elapsed = time.perf_counter() - started
                break
        self.take_reply(msg_id, timeout)
        return elapsed, "".join(chunks)

    def take_reply(self, msg_id: str, timeout: float) -> dict:
        """The shell reply (whole message) to msg_id."""
        try:
            return reply_to(self.client, msg_id, timeout)
        except TimeoutError:
            raise self._silent(f"sent no reply to {msg_id} within {timeout} s") from None

    def drain_iopub(self) -> None:
        try:
            while True:
                self.client.iopub_channel.get_msg(timeout=0.05)
        except Empty:
            pass

    def stop(self) -> None:
        if self.client is not None:
            self.client.stop_channels()
        if self.manager.has_kernel:
            self.manager.shutdown_kernel(now=True)


@contextmanager
def running_kernel(name: str) -> Iterator[Kernel]:
    kernel = Kernel(name)
    kernel.start()
    try:
        yield kernel
    finally:
        kernel.stop()


def print_report(title: str, rows: list[Row], notes: list[str] = ()) -> None:
    print(f"\n## {title}\n")
    print(format_table(rows))
    for note in notes:
        print(f"\n{note}")
    sys.stdout.flush()


# Board code shared by the live-image benchmarks: JPEG frames of a moving pattern, a camera's stand-in.
MAKE_FRAMES = """
def make_frames(width=320, height=240, count=30):
    frames = []
    for index in range(count):
        image = Image.new("RGB", (width, height), (20 + 7 * index, 60, 120))
        draw = ImageDraw.Draw(image)
        for ring in range(0, width, 12):
            box = (ring - index, ring // 2, ring + 40 + index, ring // 2 + 40)
            draw.ellipse(box, outline=(255, ring % 255, 90))
        draw.text((10, 10), "frame %d" % index, fill="white")
        out = io.BytesIO()
        image.save(out, "JPEG", quality=85)
        frames.append(out.getvalue())
    return frames
"""
