"""Live images: frames/s that reach a Jupyter client, against raw rpyc pulls, measured in one run.

    .venv/bin/python benchmarks/liveimage.py [--seconds 3] [--sizes 320x240,640x480]

Everything runs on this machine, on 127.0.0.1: a board server (``python -m rpyc_ikernel.server``),
the rpyc kernel started through jupyter_client, and this process as the frontend that counts the
``update_display_data`` messages of ``self.display("img_buffer", interval=...)``.

A board cell produces the frames: it cycles through 30 JPEGs made with Pillow on the board, storing
each in ``img_buffer`` as a ``BytesIO`` (with a counter after the JPEG's end, so every one differs).
On the *idle* board it sleeps 0.2 ms between frames (the GIL is mostly free); on the *busy* board it
never sleeps and does pure-Python work per frame, so it holds the GIL and starves rpyc's serving
threads.

Baselines, measured against the same producer in the same run:
- raw pull: ``conn.eval("...img_buffer.getvalue()")`` in a loop on a classic rpyc connection,
  uncompressed at both ends (the best one round trip per frame can do, with nothing to Jupyter);
- naive pull: netrefs as a user would write them (``ns["img_buffer"].getvalue()``), default rpyc.
Every figure counts *distinct* frames per second (a pull that returns the previous frame again is
not counted; the stream never sends one).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import queue
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import rpyc

from rpyc_ikernel.board import Address, Board
from rpyc_ikernel.handshake import Credentials
from rpyc_ikernel.liveimage import ImageLink

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from common import MAKE_FRAMES  # noqa: E402
from helpers import (  # noqa: E402
    LIVE_PRODUCER_CELL,
    KernelSession,
    install_kernelspec,
    launch_kernel,
    start_board,
)
from linkemu import LinkEmulator  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
NAMESPACE = "import _rpyc_ikernel_agent as _a\n_ns = _a.SESSIONS[{session_id!r}].namespace"

SETUP = (
    """
import io, itertools, time
from PIL import Image, ImageDraw

"""
    + MAKE_FRAMES
    + """
def produce(busy):
    global img_buffer, produced, produce_started
    produced, produce_started = 0, time.monotonic()
    work = frames[0][:2048:4]
    for frame in itertools.cycle(frames):
        produced += 1
        img_buffer = io.BytesIO(frame + produced.to_bytes(4, "big"))  # unique: a counter after EOI
        if busy:
            checksum = 0
            for byte in work:  # pure-Python "image processing": holds the GIL
                checksum ^= byte
        else:
            time.sleep(0.0002)


def camera(kind, width=320, height=240):
    # A camera loop: every iteration makes an image with Pillow and JPEG-encodes it, no sleep.
    # kind says what img_buffer holds: "bytesio" (the JPEG), "pil" (the image) or "numpy" (uint8
    # HxWx3). Every frame differs (its color counts the frames).
    global img_buffer, produced
    produced = 0
    if kind == "numpy":
        import numpy
    while True:
        produced += 1
        image = Image.new("RGB", (width, height), (produced % 256, produced // 256 % 256, 120))
        out = io.BytesIO()
        image.save(out, "JPEG")
        if kind == "bytesio":
            img_buffer = out
        elif kind == "pil":
            img_buffer = image
        else:
            img_buffer = numpy.asarray(image)


def raw_frame(kind):
    # What a raw pull fetches: the JPEG bytes, encoding the image or array first as the agent does.
    value = img_buffer
    if kind == "bytesio":
        return value.getvalue()
    if kind == "numpy":
        value = Image.fromarray(value)
    out = io.BytesIO()
    value.save(out, "JPEG", quality=85)
    return out.getvalue()
"""
)
# The agent's GIL lending off (a baseline in the same run) and back on; the timer stops by itself.
LENDING_SWITCH = "__import__('sys').modules['_rpyc_ikernel_state'].lending_off = %r"


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc; 0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """CPU share (1.0 = one core) of the board, the kernel and this process over a measurement."""

    def __init__(self, pids: dict) -> None:
        self.pids = pids
        self.start = time.monotonic()
        self.before = {name: cpu_seconds(pid) for name, pid in pids.items()}

    def shares(self) -> dict:
        elapsed = time.monotonic() - self.start
        return {name: (cpu_seconds(pid) - self.before[name]) / elapsed for name, pid in self.pids.items()}


class Bench:
    """A board server, a kernel driving it, and this process as the frontend."""

    def __init__(self, seconds: float, tls: bool = False) -> None:
        self.seconds = seconds
        self.tmp = tempfile.TemporaryDirectory()
        prefix = Path(self.tmp.name)
        install_kernelspec(prefix)
        server = [sys.executable, "-m", "rpyc_ikernel.server", "--host", "127.0.0.1"]
        self.pairing = None
        if tls:
            # A paired board, as off loopback: the server's own certificate (made now, in a config
            # directory of this run) and its token; every link of the run, baselines too, is TLS.
            config = dict(os.environ, XDG_CONFIG_HOME=str(prefix / "config"))
            self.board = start_board(server, env=config)
            self.pairing = next(
                line.strip() for line in self.board.output().splitlines() if "@sha256:" in line
            )
        else:
            # --no-auth: the raw and naive baselines pull over plain classic rpyc connections
            self.board = start_board([*server, "--no-auth"])
        self.port = self.board.port
        self.server = self.board.process
        env = dict(os.environ, RPYC_IKERNEL_HOST="127.0.0.1", RPYC_IKERNEL_PORT=str(self.port))
        if self.pairing:
            env["RPYC_IKERNEL_TOKEN"] = self.pairing
        self.manager, self.client, self.kernel_log = launch_kernel("rpyc", env)
        self.client.wait_for_ready(timeout=60)
        self.pids = {"board": self.server.pid, "kernel": self.manager.provisioner.pid, "client": os.getpid()}
        self.run(SETUP)
        self.session_id = self.run("# exec(print(self.session_id))").strip()

    def connect(self) -> rpyc.Connection:
        """A classic connection to the board: plain rpyc, or over TLS with the pairing string."""
        if self.pairing is None:
            return rpyc.classic.connect("127.0.0.1", self.port)
        return self.board_object("bench").open_connection()[0]

    def board_object(self, session_id: str) -> Board:
        credentials = Credentials(token=self.pairing) if self.pairing else Credentials()
        return Board(Address("127.0.0.1", self.port), session_id, credentials)

    def close(self) -> None:
        self.client.stop_channels()
        self.manager.shutdown_kernel(now=True)
        self.board.stop()
        self.tmp.cleanup()

    # ------------------------------------------------------------ the kernel
    def run(self, code: str) -> str:
        """Run a cell to its end; its stdout."""
        out = []

        def keep(msg):
            if msg["msg_type"] == "stream":
                out.append(msg["content"]["text"])
            elif msg["msg_type"] == "error":
                raise RuntimeError("\n".join(msg["content"]["traceback"]))

        self.client.execute_interactive(code, timeout=120, output_hook=keep)
        return "".join(out)

    def start_cell(self, code: str) -> str:
        return self.client.execute(code)

    def interrupt_and_drain(self, msg_id: str) -> None:
        """Interrupt the running producer (that stops live images too) and wait for the kernel to idle."""
        self.manager.interrupt_kernel()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                msg = self.client.get_iopub_msg(timeout=1)
            except queue.Empty:
                continue
            if (
                msg["msg_type"] == "status"
                and msg["content"]["execution_state"] == "idle"
                and msg["parent_header"].get("msg_id") == msg_id
            ):
                break
        while True:  # the execute_reply, and anything published late
            try:
                self.client.get_shell_msg(timeout=0.2)
            except queue.Empty:
                break
        time.sleep(0.3)
        while True:
            try:
                self.client.get_iopub_msg(timeout=0.2)
            except queue.Empty:
                break

    # ------------------------------------------------------------ measurements
    def stream_fps(self, busy: bool, interval: float, producer: str | None = None) -> float:
        """Frames/s of self.display("img_buffer", interval) that reach this client."""
        self._wait_for_default_switch_interval()
        producer = producer or f"produce(busy={busy})"
        msg_id = self.start_cell(f'# exec(self.display("img_buffer", interval={interval}))\n{producer}')
        count, started, last, display_id = 0, None, None, None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            msg = self.client.get_iopub_msg(timeout=10)
            transient = msg["content"].get("transient") or {}
            if msg["msg_type"] == "display_data" and transient.get("display_id"):
                display_id = transient["display_id"]
            elif msg["msg_type"] == "update_display_data" and transient.get("display_id") == display_id:
                last = time.monotonic()
                if started is None:
                    started, deadline = last, last + self.seconds
                    meter = CpuMeter(self.pids)
                else:
                    count += 1
        self.cpu = meter.shares()
        self.interrupt_and_drain(msg_id)
        return count / (last - started)  # frames after the first one, up to the last one

    def raw_pull_fps(self, producer: str, pull: str) -> float:
        """Distinct frames/s of `pull` evaluated on a raw uncompressed connection against `producer`."""
        msg_id = self.start_cell(producer)
        time.sleep(0.5)
        raw = self.connect()
        raw._channel.compress = False
        raw.root.getconn()._channel.compress = False
        try:
            raw.execute(NAMESPACE.format(session_id=self.session_id))
            fps = distinct_per_second(lambda: raw.eval(pull), self.seconds)
        finally:
            raw.close()
        self.interrupt_and_drain(msg_id)
        return fps

    def set_lending(self, on: bool) -> None:
        """Turn the agent's GIL lending off (a baseline in the same run) or back on."""
        with contextlib.closing(self.connect()) as conn:
            conn.execute(NAMESPACE.format(session_id=self.session_id))  # the agent's state exists
            conn.execute(LENDING_SWITCH % (not on))

    def pull_fps(self, busy: bool) -> tuple[float, float]:
        """(raw pull frames/s, naive netref pull frames/s) against the producer cell."""
        self._wait_for_default_switch_interval()
        msg_id = self.start_cell(f"produce(busy={busy})")
        time.sleep(0.5)
        raw = self.connect()
        raw._channel.compress = False
        raw.root.getconn()._channel.compress = False
        naive = self.connect()
        try:
            for conn in (raw, naive):
                conn.execute(NAMESPACE.format(session_id=self.session_id))
            namespace = naive.eval("_ns")
            meter = CpuMeter(self.pids)
            raw_fps = distinct_per_second(lambda: raw.eval("_ns['img_buffer'].getvalue()"), self.seconds)
            self.cpu = meter.shares()
            naive_fps = distinct_per_second(lambda: namespace["img_buffer"].getvalue(), self.seconds)
        finally:
            raw.close()
            naive.close()
        self.interrupt_and_drain(msg_id)
        return raw_fps, naive_fps

    def cell_speed(
        self,
        rounds: int = 5,
        window: float = 1.5,
        producer: str = "produce(busy=True)",
        intervals=(0.05, 0.0),
    ) -> dict:
        """How fast the producer cell runs while frames are read at each interval, vs no reader.

        Each round has adjacent windows (no reader, then each interval) within one producer run,
        and each reading is divided by its own round's no-reader window: the machine's other load
        drifts slowly, so this cancels most of it. Frames are read through the kernel's own
        ImageLink (no Jupyter): this measures the board side alone. Also the board's CPU share
        (1.0 = one core) beyond the no-reader window's, in self.extra_cpu.
        """
        link = ImageLink(self.board_object(self.session_id))
        msg_id = self.start_cell(producer)  # after the link: its tick handler is installed first
        ratios: dict = {interval: [] for interval in intervals}
        extra: dict = {interval: [] for interval in intervals}
        waits: dict = {interval: [] for interval in intervals}  # the cell's wait per request (lending)
        try:
            for _ in range(rounds):
                self._wait_for_default_switch_interval()
                speed, cpu = {}, {}
                for interval in (None, *intervals):
                    lent = self._lent_seconds()
                    before, started = self._produced(), time.monotonic()
                    meter = CpuMeter({"board": self.pids["board"]})
                    read_images_for(link, self.session_id, interval, window)
                    cpu[interval] = meter.shares()["board"]
                    speed[interval] = (self._produced() - before) / (time.monotonic() - started)
                    if interval:
                        waits[interval].append((self._lent_seconds() - lent) * interval / window)
                for interval in ratios:
                    ratios[interval].append(speed[interval] / speed[None])
                    extra[interval].append(cpu[interval] - cpu[None])
        finally:
            link.close()
        self.interrupt_and_drain(msg_id)
        self.extra_cpu = {interval: statistics.median(values) for interval, values in extra.items()}
        self.waits = {
            interval: statistics.median(values) if values else 0.0 for interval, values in waits.items()
        }
        return {interval: statistics.median(values) for interval, values in ratios.items()}

    def _board_eval(self, expression: str):
        with contextlib.closing(self.connect()) as conn:
            conn.execute(NAMESPACE.format(session_id=self.session_id))
            return conn.eval(expression)

    def _produced(self) -> int:
        return self._board_eval("_ns.get('produced', 0)")

    def _lent_seconds(self) -> float:
        """How long the board's main thread has waited for frames threads so far (GIL lending)."""
        return self._board_eval(
            "getattr(__import__('sys').modules['_rpyc_ikernel_state'], 'lent_seconds', 0.0)"
        )

    def _wait_for_default_switch_interval(self) -> None:
        """The agent shortens the GIL switch interval while it serves frames; wait until it is back."""
        deadline = time.monotonic() + 10
        while (
            time.monotonic() < deadline and self._board_eval("__import__('sys').getswitchinterval()") < 0.005
        ):
            time.sleep(0.2)


def read_images_for(link: ImageLink, session_id: str, interval: float | None, seconds: float) -> None:
    """Read img_buffer every `interval` seconds (None: not at all) for `seconds`."""
    digest, started, due = "", time.monotonic(), time.monotonic()
    while time.monotonic() - started < seconds:
        if interval is None:
            time.sleep(0.05)
            continue
        time.sleep(max(0.0, due - time.monotonic()))
        due += interval
        ((digest, _kind, _payload),) = link.request(session_id, (("img_buffer", digest),)).result(10)


def distinct_per_second(pull, seconds: float) -> float:
    count, last = 0, None
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        frame = pull()
        if frame != last:
            count += 1
            last = frame
    return count / (time.monotonic() - started)


def stalled_link_fps(rtt: float = 0.1, stall: float = 0.15, seconds: float = 10.0) -> float:
    """Frames/s at interval 0.05 over an emulated `rtt` link that stalls `stall` s every second.

    Each stall delays every request in flight at once; the most a stream can show is about
    20 * (1 - stall) frames/s. How fast the kernel's window of requests recovers decides the rest.
    """
    board = start_board()
    try:
        with LinkEmulator(board.port, rtt=rtt) as link:
            session = KernelSession.start(board_port=link.port, env=link.forward_env)
            try:
                session.run("1", timeout=60)
                stop, started, times = threading.Event(), time.monotonic(), []

                def stalls() -> None:
                    time.sleep(3)  # past the ramp-up
                    while not stop.wait(1.0 - stall):
                        link.stall(stall)
                        time.sleep(stall)

                threading.Thread(target=stalls, daemon=True).start()

                def keep(msg: dict) -> None:
                    if msg["msg_type"] == "update_display_data":
                        times.append(time.monotonic() - started)

                code = '# exec(self.display("img_buffer", interval=0.05))\n'
                session.client.execute_interactive(
                    code + LIVE_PRODUCER_CELL.format(seconds=seconds + 4), timeout=120, output_hook=keep
                )
                stop.set()
                session.run("# exec(self.stop_display())", timeout=60)
            finally:
                session.stop()
    finally:
        board.stop()
    return len([t for t in times if 3.5 <= t <= 3.5 + seconds]) / seconds


CAMERA_INTERVALS = (0.05, 0.02)
BASELINE_RUNS = 3  # runs without GIL lending, for comparison


def measure_camera(bench: Bench, kind: str, runs: int) -> dict | None:
    """A camera loop's variable streamed at each interval (runs times), vs a raw pull and the loop alone."""
    if kind == "numpy" and "no" in bench.run(
        "try:\n    import numpy\n    print('yes')\nexcept ImportError:\n    print('no')"
    ):
        print("numpy: not on the board, skipped", flush=True)
        return None
    producer = f"camera({kind!r})"
    row: dict = {"kind": kind, "fps": {}, "off": {}}
    for interval in CAMERA_INTERVALS:
        row["fps"][interval] = [bench.stream_fps(True, interval, producer) for _ in range(runs)]
        bench.set_lending(False)
        try:
            row["off"][interval] = [bench.stream_fps(True, interval, producer) for _ in range(BASELINE_RUNS)]
        finally:
            bench.set_lending(True)
        print(
            f"camera {kind} interval {interval}: "
            + ", ".join(f"{fps:.1f}" for fps in row["fps"][interval])
            + " fps; without lending: "
            + ", ".join(f"{fps:.1f}" for fps in row["off"][interval]),
            flush=True,
        )
    bench.run("# exec(self.stop_display())")
    row["raw"] = bench.raw_pull_fps(producer, f"_ns['raw_frame']({kind!r})")
    row["speed"] = bench.cell_speed(rounds=5, producer=producer, intervals=CAMERA_INTERVALS)
    row["cpu"] = bench.extra_cpu
    print(
        f"camera {kind}: raw pull {row['raw']:.0f}/s; loop speed "
        + ", ".join(f"{row['speed'][i]:.0%} at interval {i}" for i in CAMERA_INTERVALS)
        + f"; board CPU beyond the loop at interval 0.05: {row['cpu'][0.05]:.0%}; the loop waits "
        + ", ".join(f"{bench.waits[i] * 1e3:.2f} ms per request at {i}" for i in CAMERA_INTERVALS),
        flush=True,
    )
    return row


def tenth_percentile(values: list) -> float:
    ordered = sorted(values)
    return ordered[int(0.1 * (len(ordered) - 1))]


def print_camera_table(cameras: list) -> None:
    print()
    print(
        "| camera loop variable | interval 0.05: fps p10 / median | interval 0.02: fps p10 / median"
        " | without lending (median, 0.05 / 0.02) | raw pull fps | stream 0.05 / raw"
        " | loop speed while streaming (0.05 / 0.02) | board CPU beyond the loop (0.05) |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for row in cameras:
        fps, off, speed = row["fps"], row["off"], row["speed"]
        cells = [
            f"{tenth_percentile(fps[i]):.1f} / {statistics.median(fps[i]):.1f}" for i in CAMERA_INTERVALS
        ]
        print(
            f"| {row['kind']} | {cells[0]} | {cells[1]}"
            f" | {statistics.median(off[0.05]):.1f} / {statistics.median(off[0.02]):.1f}"
            f" | {row['raw']:,.0f} | {statistics.median(fps[0.05]) / row['raw']:.2f}"
            f" | {speed[0.05]:.0%} / {speed[0.02]:.0%} | {row['cpu'][0.05]:.0%} |"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="length of each measurement")
    parser.add_argument("--sizes", default="320x240,640x480")
    parser.add_argument("--loads", default="idle,busy")
    parser.add_argument("--cameras", default="bytesio,pil,numpy", help="camera-loop variables ('' for none)")
    parser.add_argument("--runs", type=int, default=10, help="stream runs per camera variable and interval")
    parser.add_argument(
        "--tls", action="store_true", help="a paired board: every link TLS (the kernel's, the baselines')"
    )
    parser.add_argument(
        "--stalls", type=int, default=0, help="runs over a 100 ms link that stalls 150 ms every second"
    )
    args = parser.parse_args()
    if args.stalls:
        with tempfile.TemporaryDirectory() as prefix:
            install_kernelspec(Path(prefix))
            runs = [stalled_link_fps() for _ in range(args.stalls)]
        print("100 ms link, 150 ms stall every second, interval 0.05: " + ", ".join(f"{r:.1f}" for r in runs))
        print("frames/s (at most about 17: each stall holds 3 frames)")
        return 0
    bench = Bench(args.seconds, tls=args.tls)
    rows, costs, cameras = [], [], []
    try:
        for kind in filter(None, args.cameras.split(",")):
            row = measure_camera(bench, kind, args.runs)
            if row is not None:
                cameras.append(row)
        for size in filter(None, args.sizes.split(",")):  # --sizes '': the camera loops only
            width, height = (int(n) for n in size.split("x"))
            frame_bytes = int(
                bench.run(
                    f"frames = make_frames({width}, {height})\nprint(sum(map(len, frames)) // len(frames))"
                )
            )
            for load in args.loads.split(","):
                busy = load == "busy"
                stream = bench.stream_fps(busy, interval=0)
                stream_cpu = bench.cpu
                paced = bench.stream_fps(busy, interval=0.05)
                paced_cpu = bench.cpu
                raw, naive = bench.pull_fps(busy)
                raw_cpu = bench.cpu
                rows.append((size, frame_bytes, load, stream, paced, raw, naive))
                print(
                    f"{size} {load}: stream {stream:.0f}/s (interval 0.05: {paced:.1f}/s),"
                    f" raw pull {raw:.0f}/s, naive pull {naive:.1f}/s",
                    flush=True,
                )
                for what, cpu in (
                    ("stream", stream_cpu),
                    ("stream at 0.05", paced_cpu),
                    ("raw pull", raw_cpu),
                ):
                    print(f"    CPU during {what}: " + ", ".join(f"{k} {v:.0%}" for k, v in cpu.items()))
            if "busy" in args.loads:
                speed = bench.cell_speed()
                costs.append((size, speed[0.05], speed[0.0]))
                print(f"{size} busy cell speed: {speed[0.05]:.0%} at 20 frames/s, {speed[0.0]:.0%} flat out")
    finally:
        bench.close()
    print()
    print(
        "| frames | JPEG bytes | board | stream fps (interval 0) | stream fps (interval 0.05)"
        " | raw pull fps | naive pull fps | stream / raw | stream / naive |"
    )
    print("| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for size, frame_bytes, load, stream, paced, raw, naive in rows:
        print(
            f"| {size} | {frame_bytes:,} | {load} | {stream:,.0f} | {paced:.1f} | {raw:,.0f} | {naive:,.1f}"
            f" | {stream / raw:.2f}x | {stream / naive:.1f}x |"
        )
    if cameras:
        print_camera_table(cameras)
    if costs:
        print()
        print("| frames | busy cell speed while frames are read at 20/s | ... read flat out |")
        print("| --- | ---: | ---: |")
        for size, paced, flat_out in costs:
            print(f"| {size} | {paced:.0%} | {flat_out:.0%} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
