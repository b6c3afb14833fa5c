"""Real links: what the kernel costs over latency and limited bandwidth, against the link and raw rpyc.

    .venv/bin/python benchmarks/links.py            # the table (about 5 minutes)
    .venv/bin/python benchmarks/links.py --quick    # one profile, tiny sizes (CI smoke test, seconds)
    .venv/bin/python benchmarks/links.py --profiles 100x20,300x5

Everything runs on 127.0.0.1: a board server (``python -m rpyc_ikernel.server``, token auth as users run
it) and a real rpyc kernel started through jupyter_client, with the link emulator (tests/linkemu.py)
between them; each profile is "RTT in ms x Mbit/s" (0x0: no delay, no cap). Raw rpyc baselines go
through a second emulator with the same profile to a ``--no-auth`` server: a classic connection's
connect + one eval, an ``eval`` round trip, a bulk ``eval`` of random bytes, and a pull loop of
``img_buffer.getvalue()`` (one round trip per frame, what the kernel's live image does today).

Figures: connect = the first cell of a new kernel (``1+1``; the agent is already on the board), from
execute_request to idle. The emulator cannot delay TCP's own handshake (one RTT on a real link), so
connects (ours and raw) are one RTT faster here than on a real link. Print throughput is the payload
(base64 text, which zlib cannot squeeze much) per second of the cell, as % of the link's rate; "wire" is
what the emulator carried in that direction. Live image: ``self.display("img_buffer", interval=0.05)``
of 320x240 JPEGs from a 30 frames/s producer on the board; lag is from the board storing a frame to
this client receiving it (the frame carries its time; board and client share this machine's clock).
The stock ipykernel ``1+1`` (measured once, no board and no link) is the floor of Jupyter's own
message path on this machine: what ``1+1`` costs beyond the round trip can hardly be less.
Interrupt: SIGINT to the kernel during ``time.sleep(30)`` until the execute_reply; the first one is
the first use of the side connection (the kernel opens it in the background after connecting).
Completion: ``complete_request`` of a board variable while idle. Upload/download: ``self.upload`` /
``self.download`` cells of a random file, whole cell timed.
"""

from __future__ import annotations

import argparse
import base64
import os
import platform
import statistics
import struct
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from queue import Empty

import rpyc
from common import MAKE_FRAMES, REPO, Kernel

sys.path.insert(0, str(REPO / "tests"))
from helpers import BoardServer, install_kernelspec, start_board, wait_for_iopub  # noqa: E402
from linkemu import LinkEmulator, bytes_per_second  # noqa: E402

from rpyc_ikernel.handshake import read_token_file  # noqa: E402
from rpyc_ikernel.server import default_token_path  # noqa: E402

FULL_PROFILES = "0x0,20x20,100x5,100x20,100x100,300x20"
QUICK_PROFILES = "20x20"
INTERVAL = 0.05
CAMERA_FPS = 30
GOAL_PROFILE = (100, 20)

PRODUCER = """
import io, struct, threading, time
from PIL import Image, ImageDraw

{make_frames}
def produce(seconds, fps={fps}):
    global img_buffer
    frames = make_frames()
    end, index = time.monotonic() + seconds, 0
    while time.monotonic() < end:
        # a camera: a new frame every 1/fps s, stamped (after the JPEG's end) with when it was stored
        img_buffer = io.BytesIO(frames[index % len(frames)] + struct.pack(">d", time.time()))
        index += 1
        time.sleep(1.0 / fps)
""".replace("{fps}", str(CAMERA_FPS)).replace("{make_frames}", MAKE_FRAMES)


@dataclass
class Sizes:
    one_plus_one: int = 7  # cells
    print_seconds: float = 3.0  # of link time
    print_max: int = 8 << 20
    frames_seconds: float = 4.0  # measuring window
    interrupts: int = 2
    completions: int = 5
    transfer_seconds: float = 3.0
    transfer_max: int = 16 << 20
    transfer_min: int = 1 << 20

    @classmethod
    def quick(cls) -> Sizes:
        return cls(3, 0.5, 256 << 10, 1.5, 1, 2, 0.5, 256 << 10, 128 << 10)


@dataclass
class Profile:
    rtt_ms: float
    mbit: float  # 0: no cap

    @classmethod
    def parse(cls, text: str) -> Profile:
        rtt, rate = text.lower().split("x")
        return cls(float(rtt), float(rate))

    @property
    def rtt(self) -> float:
        return self.rtt_ms / 1000

    @property
    def rate(self) -> float | None:
        return bytes_per_second(self.mbit) if self.mbit else None

    def __str__(self) -> str:
        rate = f"{self.mbit:g} Mbit/s" if self.mbit else "no cap"
        return f"{self.rtt_ms:g} ms, {rate}"

    def bytes_for(self, seconds: float, low: int, high: int) -> int:
        """A payload that takes about `seconds` on this link, within [low, high]."""
        return int(min(high, max(low, (self.rate or float("inf")) * seconds)))


@dataclass
class Figures:
    """What one profile measured; seconds and bytes/s (None: not measured)."""

    profile: Profile
    values: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)  # what failed, in one line each

    def __getitem__(self, key: str):
        return self.values.get(key)

    def __setitem__(self, key: str, value) -> None:
        self.values[key] = value


CHANGED_ENVIRONMENT = (
    "XDG_CONFIG_HOME",
    "JUPYTER_PATH",
    "RPYC_IKERNEL_HOST",
    "RPYC_IKERNEL_FORWARD",
    "RPYC_IKERNEL_PORT",
    "RPYC_IKERNEL_TOKEN",
    "RPYC_IKERNEL_TOKEN_FILE",
)


def restore_environment(saved: dict) -> None:
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


class Bench:
    """The kernelspec, a token board and a no-auth board, each behind its own emulator."""

    def __init__(self, stack: ExitStack) -> None:
        self.tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="rpyc-links-")))
        saved = {name: os.environ.get(name) for name in CHANGED_ENVIRONMENT}
        stack.callback(restore_environment, saved)
        os.environ["XDG_CONFIG_HOME"] = str(self.tmp / "config")  # the boards' token file, not yours
        for name in ("RPYC_IKERNEL_TOKEN", "RPYC_IKERNEL_TOKEN_FILE"):
            os.environ.pop(name, None)
        install_kernelspec(self.tmp / "prefix")
        self.board = self._board(stack, [])
        self.raw_board = self._board(stack, ["--no-auth"])
        self.link = stack.enter_context(LinkEmulator(self.board.port))
        self.raw_link = stack.enter_context(LinkEmulator(self.raw_board.port))
        os.environ["RPYC_IKERNEL_HOST"] = "127.0.0.1"
        os.environ["RPYC_IKERNEL_PORT"] = str(self.link.port)
        os.environ["RPYC_IKERNEL_FORWARD"] = f"127.0.0.1:{self.board.port}"  # the emulator forwards

    def _board(self, stack: ExitStack, options: list[str]) -> BoardServer:
        command = [sys.executable, "-m", "rpyc_ikernel.server", "--host", "127.0.0.1", *options]
        board = start_board(command=command)
        stack.callback(board.stop)
        return board

    def set_profile(self, profile: Profile) -> None:
        for link in (self.link, self.raw_link):
            link.set(rtt=profile.rtt, mbit=profile.mbit or None)

    def raw_connection(self) -> rpyc.Connection:
        conn = rpyc.classic.connect("127.0.0.1", self.raw_link.port)
        conn._config["sync_request_timeout"] = 120
        return conn


# ---------------------------------------------------------------- raw rpyc baselines
def measure_raw(bench: Bench, profile: Profile, sizes: Sizes, figures: Figures) -> None:
    started = time.perf_counter()
    conn = bench.raw_connection()
    try:
        conn.eval("1+1")
        figures["raw connect"] = time.perf_counter() - started
        figures["raw eval"] = median_time(lambda: conn.eval("1+1"), sizes.one_plus_one)
        conn._channel.compress = False  # random bytes do not compress: zlib would only cost time
        conn.root.getconn()._channel.compress = False
        size = profile.bytes_for(sizes.print_seconds, 64 << 10, sizes.print_max)
        conn.execute(f"import os\nblob = os.urandom({size})")
        started = time.perf_counter()
        assert len(conn.eval("blob")) == size
        figures["raw bulk"] = size / (time.perf_counter() - started)
        figures["raw pull fps"], figures["raw pull lag"] = raw_pull(conn, sizes.frames_seconds)
    finally:
        conn.close()


def raw_pull(conn: rpyc.Connection, seconds: float) -> tuple[float, float]:
    """Distinct frames/s and median lag of a getvalue() loop against a producer thread on the board."""
    conn.execute(PRODUCER)
    conn.execute(f"threading.Thread(target=produce, args=({seconds + 3},), daemon=True).start()")
    time.sleep(0.5)
    last, count, lags = None, 0, []
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        frame = conn.eval("img_buffer.getvalue()")
        if frame != last:
            count += 1
            last = frame
            lags.append(time.time() - struct.unpack(">d", frame[-8:])[0])
    return count / (time.perf_counter() - started), statistics.median(lags)


# ---------------------------------------------------------------- the kernel
def measure_kernel(bench: Bench, profile: Profile, sizes: Sizes, figures: Figures) -> None:
    kernel = Kernel("rpyc")
    kernel.start()
    try:
        try:
            measure_connect(bench, kernel, figures)
        except Exception as exc:
            figures.notes.append(f"{profile}: no connection, nothing measured: {one_line(exc)}")
            return
        steps = (
            ("1+1", lambda: median_time(lambda: kernel.execute("1+1"), sizes.one_plus_one)),
            ("print", lambda: measure_print(bench, kernel, profile, sizes, figures)),
            ("interrupt", lambda: measure_interrupts(kernel, sizes, figures)),  # first opens the side link
            ("live image", lambda: measure_frames(kernel, sizes, figures)),
            ("completion", lambda: measure_completion(kernel, sizes)),
            ("transfers", lambda: measure_transfers(bench, kernel, profile, sizes, figures)),
        )
        for name, step in steps:
            try:
                value = step()
            except Exception as exc:  # one failed measurement must not lose the rest of the table
                figures.notes.append(f"{profile}: {name} failed: {one_line(exc)}")
                settle(kernel)
                continue
            if value is not None:
                figures[name] = value
    finally:
        kernel.stop()


def measure_connect(bench: Bench, kernel: Kernel, figures: Figures) -> None:
    """The first cell of a new kernel; if it fails, today's workaround (a long timeout, the token)."""
    try:
        figures["connect"], _ = kernel.execute("1+1")
        return
    except RuntimeError as exc:
        figures["connect failed"] = True
        figures.notes.append(f"{figures.profile}: the first cell failed: {one_line(exc)}")
        settle(kernel)
    token = read_token_file(default_token_path())
    cell = f'# exec(self.connect_remote("127.0.0.1", port={bench.link.port}, timeout=60, token={token!r}))'
    figures["connect workaround"], _ = kernel.execute(cell)


def settle(kernel: Kernel) -> None:
    """After a failed cell: ipykernel aborts requests that arrive while it stops on the error."""
    time.sleep(1.0)
    kernel.drain_iopub()


def one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= 240 else text[:237] + "..."


def measure_stock(sizes: Sizes) -> float | None:
    """Median `1+1` of stock ipykernel (the python3 kernel) here: Jupyter's own floor, no board."""
    kernel = Kernel("python3")
    try:
        kernel.start()
        kernel.execute("1+1")
        return median_time(lambda: kernel.execute("1+1"), max(sizes.one_plus_one, 9))
    except Exception:
        return None
    finally:
        kernel.stop()


def measure_completion(kernel: Kernel, sizes: Sizes) -> float:
    kernel.execute("alpha_beta_gamma = 1")
    return median_time(lambda: complete(kernel, "alpha_beta_g"), sizes.completions)


def measure_print(bench: Bench, kernel: Kernel, profile: Profile, sizes: Sizes, figures: Figures) -> None:
    size = profile.bytes_for(sizes.print_seconds, 64 << 10, sizes.print_max)
    kernel.execute(
        "import base64, os\n"
        f"chunks = [base64.encodebytes(os.urandom(3072)).decode() for _ in range({size} // 4150 + 1)]"
    )
    wire_before = bench.link.down.delivered
    seconds, text = kernel.execute("for chunk in chunks:\n    print(chunk, end='')")
    wire = bench.link.down.delivered - wire_before
    figures["print"] = len(text) / seconds
    figures["print wire"] = wire / seconds


def measure_frames(kernel: Kernel, sizes: Sizes, figures: Figures) -> None:
    kernel.execute(PRODUCER)
    produce_for = sizes.frames_seconds + 12  # the stream's first frame may take a few RTTs
    msg_id = kernel.client.execute(
        f'# exec(self.display("img_buffer", interval={INTERVAL}))\nproduce({produce_for})'
    )
    display_id, count, first, last, lags, interrupted = None, 0, None, None, [], False
    deadline = time.monotonic() + produce_for + 30
    while time.monotonic() < deadline:
        try:
            msg = kernel.client.iopub_channel.get_msg(timeout=1)
        except Empty:
            continue
        content, kind = msg["content"], msg["msg_type"]
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        if kind == "status" and content["execution_state"] == "idle":
            break
        transient = content.get("transient") or {}
        if kind == "display_data" and transient.get("display_id"):
            display_id = transient["display_id"]
        if kind != "update_display_data" or transient.get("display_id") != display_id:
            continue
        jpeg = content["data"].get("image/jpeg")
        if jpeg is None:
            continue
        now = time.monotonic()
        if first is None:
            first = now
        elif now - first <= sizes.frames_seconds:
            count, last = count + 1, now
            lags.append(time.time() - struct.unpack(">d", base64.b64decode(jpeg)[-8:])[0])
        if now - first > sizes.frames_seconds and not interrupted:
            kernel.manager.interrupt_kernel()  # the producer (and with it the stream) can stop now
            interrupted = True
    kernel.take_reply(msg_id, 30)
    kernel.execute("# exec(self.stop_display())")
    figures["fps"] = count / (last - first) if last else 0.0  # frames after the first, to the last
    figures["lag"] = statistics.median(lags) if lags else None
    figures["lag max"] = max(lags) if lags else None  # a queue that grows shows here


def measure_interrupts(kernel: Kernel, sizes: Sizes, figures: Figures) -> None:
    times = []
    for _ in range(sizes.interrupts):
        msg_id = kernel.client.execute("import time\ntime.sleep(30)")
        wait_for_busy(kernel, msg_id)
        time.sleep(0.5)
        started = time.perf_counter()
        kernel.manager.interrupt_kernel()
        kernel.take_reply(msg_id, 60)
        times.append(time.perf_counter() - started)
        kernel.drain_iopub()
    figures["interrupt first"] = times[0]
    figures["interrupt"] = times[-1]


def wait_for_busy(kernel: Kernel, msg_id: str) -> None:
    wait_for_iopub(kernel.client, msg_id, "execute_input", timeout=30)


def complete(kernel: Kernel, code: str) -> None:
    reply = kernel.take_reply(kernel.client.complete(code, len(code)), 60)
    if "alpha_beta_gamma" not in reply["content"]["matches"]:
        raise RuntimeError(f"completion failed: {reply['content']}")


def measure_transfers(bench: Bench, kernel: Kernel, profile: Profile, sizes: Sizes, figures: Figures) -> None:
    size = profile.bytes_for(sizes.transfer_seconds, sizes.transfer_min, sizes.transfer_max)
    local, remote, back = (bench.tmp / name for name in ("local.bin", "remote.bin", "back.bin"))
    for path in (remote, back):
        path.unlink(missing_ok=True)
    local.write_bytes(os.urandom(size))
    seconds, text = kernel.execute(f"# exec(self.upload({str(local)!r}, {str(remote)!r}))")
    if not text.startswith("Uploaded"):
        raise RuntimeError(f"upload failed: {text!r}")
    figures["upload"] = size / seconds
    seconds, text = kernel.execute(f"# exec(self.download({str(remote)!r}, {str(back)!r}))")
    if not text.startswith("Downloaded") or back.read_bytes() != local.read_bytes():
        raise RuntimeError(f"download failed: {text!r}")
    figures["download"] = size / seconds


def median_time(action, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


# ---------------------------------------------------------------- the report
def in_rtts(seconds: float | None, profile: Profile) -> str:
    if seconds is None:
        return "-"
    text = f"{seconds * 1000:,.0f} ms" if seconds >= 0.01 else f"{seconds * 1000:.2f} ms"
    if profile.rtt:
        text += f" = {seconds / profile.rtt:.1f} RTT"
    return text


def of_link(rate: float | None, profile: Profile) -> str:
    if rate is None:
        return "-"
    text = f"{rate / 1e6:.2f} MB/s"
    if profile.rate:
        text += f" = {rate / profile.rate:.0%}"
    return text


def ratio(value: float | None, baseline: float | None) -> str:
    return f"{value / baseline:.1f}x" if value and baseline else "-"


ROWS = [
    ("connect: first cell `1+1`", lambda f, p: "FAILS" if f["connect failed"] else in_rtts(f["connect"], p)),
    ("... connect_remote(timeout=60, token=)", lambda f, p: in_rtts(f["connect workaround"], p)),
    ("... vs raw connect + eval", lambda f, p: ratio(f["connect"], f["raw connect"])),
    ("raw rpyc connect + eval", lambda f, p: in_rtts(f["raw connect"], p)),
    ("`1+1` send -> idle, median", lambda f, p: in_rtts(f["1+1"], p)),
    ("... minus RTT", lambda f, p: f"{(f['1+1'] - p.rtt) * 1000:.1f} ms" if f["1+1"] else "-"),
    ("... stock ipykernel `1+1` (no board, no link)", lambda f, p: in_rtts(f["stock 1+1"], Profile(0, 0))),
    ("raw rpyc `eval` round trip", lambda f, p: in_rtts(f["raw eval"], p)),
    ("print throughput (payload, % of link)", lambda f, p: of_link(f["print"], p)),
    ("... on the wire", lambda f, p: of_link(f["print wire"], p)),
    ("raw rpyc bulk `eval` (% of link)", lambda f, p: of_link(f["raw bulk"], p)),
    (
        "live image fps (interval 0.05, 320x240)",
        lambda f, p: f"{f['fps']:.1f}" if f["fps"] is not None else "-",
    ),
    ("... raw pull fps (1 round trip per look)", lambda f, p: f"{f['raw pull fps']:.1f}"),
    ("live image lag, median", lambda f, p: in_rtts(f["lag"], p)),
    ("... largest", lambda f, p: in_rtts(f["lag max"], p)),
    ("... goal RTT + 2 intervals", lambda f, p: f"{(p.rtt + 2 * INTERVAL) * 1000:.0f} ms"),
    ("... raw pull lag, median", lambda f, p: in_rtts(f["raw pull lag"], p)),
    ("interrupt -> reply (first: side link opened ahead)", lambda f, p: in_rtts(f["interrupt first"], p)),
    ("interrupt -> reply (again)", lambda f, p: in_rtts(f["interrupt"], p)),
    ("completion, median", lambda f, p: in_rtts(f["completion"], p)),
    ("upload (whole cell, % of link)", lambda f, p: of_link(f["upload"], p)),
    ("download (whole cell, % of link)", lambda f, p: of_link(f["download"], p)),
]


def table(results: list[Figures]) -> str:
    lines = [
        "| RTT, bandwidth | " + " | ".join(str(f.profile) for f in results) + " |",
        "| --- | " + " | ".join("---:" for _ in results) + " |",
    ]
    for label, show in ROWS:
        cells = []
        for figures in results:
            try:
                cells.append(show(figures, figures.profile))
            except (TypeError, KeyError):
                cells.append("-")
        if all(cell == "-" for cell in cells):
            continue  # e.g. the connect workaround, measured only when the first cell failed
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def goals(figures: Figures) -> str:
    """Issue 11's goals, held against the figures of one profile (100 ms / 20 Mbit/s)."""
    p = figures.profile
    rtt, rate = p.rtt, p.rate or float("inf")
    checks = [
        ("connect <= 6 RTT", "connect", lambda v: v <= 6 * rtt, in_rtts),
        ("`1+1` <= 1 RTT + 5 ms", "1+1", lambda v: v <= rtt + 0.005, in_rtts),
        ("print >= 70% of link", "print", lambda v: v >= 0.7 * rate, of_link),
        ("live image >= 20 fps", "fps", lambda v: v >= 20, lambda v, p: f"{v:.1f} fps"),
        ("lag <= RTT + 2 intervals (largest)", "lag max", lambda v: v <= rtt + 2 * INTERVAL, in_rtts),
        ("interrupt <= 1 RTT + 100 ms", "interrupt", lambda v: v <= rtt + 0.1, in_rtts),
        ("completion <= 1 RTT + 20 ms", "completion", lambda v: v <= rtt + 0.02, in_rtts),
        ("upload >= 80% of link", "upload", lambda v: v >= 0.8 * rate, of_link),
        ("download >= 80% of link", "download", lambda v: v >= 0.8 * rate, of_link),
    ]
    lines = [f"| goal at {p} | measured | result |", "| --- | ---: | --- |"]
    for name, key, holds, show in checks:
        value = figures[key]
        if value is None:
            lines.append(f"| {name} | - | MISS (failed) |")
        else:
            lines.append(f"| {name} | {show(value, p)} | {'PASS' if holds(value) else 'MISS'} |")
        if key == "1+1" and figures["stock 1+1"] is not None:
            floor = in_rtts(figures["stock 1+1"], Profile(0, 0))
            lines.append(f"| ... stock ipykernel `1+1`, no board, no link | {floor} | Jupyter's own floor |")
    return "\n".join(lines)


def run(profiles: list[Profile], sizes: Sizes, log=print) -> list[Figures]:
    """Measure every profile; returns the figures (main() prints them)."""
    results = []
    with ExitStack() as stack:
        bench = Bench(stack)
        stock = measure_stock(sizes)
        for profile in profiles:
            started = time.monotonic()
            bench.set_profile(profile)
            figures = Figures(profile)
            figures["stock 1+1"] = stock
            try:
                measure_raw(bench, profile, sizes, figures)
            except Exception as exc:
                figures.notes.append(f"{profile}: raw rpyc baselines failed: {one_line(exc)}")
            measure_kernel(bench, profile, sizes, figures)
            results.append(figures)
            log(f"measured {profile} in {time.monotonic() - started:.0f} s")
            for note in figures.notes:
                log(f"    {note}")
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one profile, tiny sizes: a smoke test")
    parser.add_argument("--profiles", help=f"RTTms x Mbit/s, comma separated (default {FULL_PROFILES})")
    args = parser.parse_args()
    sizes = Sizes.quick() if args.quick else Sizes()
    profiles = [
        Profile.parse(p)
        for p in (args.profiles or (QUICK_PROFILES if args.quick else FULL_PROFILES)).split(",")
    ]
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    print(
        f"Python {platform.python_version()}, rpyc {rpyc.__version__}, {os.cpu_count()} CPUs, load {load};"
        " 127.0.0.1 through tests/linkemu.py",
        flush=True,
    )
    started = time.monotonic()
    results = run(profiles, sizes, log=lambda text: print(text, flush=True))
    print()
    print(table(results))
    for figures in results:
        if (figures.profile.rtt_ms, figures.profile.mbit) == GOAL_PROFILE:
            print()
            print(goals(figures))
    notes = [note for figures in results for note in figures.notes]
    if notes:
        print("\nFailures:\n" + "\n".join(f"- {note}" for note in notes))
    print(f"\n{len(results)} profiles in {time.monotonic() - started:.0f} s.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
