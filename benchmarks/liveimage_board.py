"""Live images from a camera-like loop on a test board: the stream at interval 0.05 against a raw pull.

    .venv/bin/python benchmarks/liveimage_board.py [--board bookworm-armhf|host] [--seconds 8]

The board (see scripts/boards.py; ``host`` is this machine's Python) runs our server.py and a cell that
never sleeps: each iteration does C work that releases the GIL (zlib over a 320x240 RGB buffer, as
an encoder does; the Debian boards have no Pillow) and stores a 320x240 JPEG made here, with a counter
after its end, in ``img_buffer`` (a BytesIO). Measured in the same run against the same loop: distinct
frames/s that reach this client through ``self.display("img_buffer", interval=0.05)``, and distinct
frames/s of a raw pull (``conn.eval("...getvalue()")`` in a loop on an uncompressed connection).
"""

from __future__ import annotations

import argparse
import base64
import io
import os
import queue
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO / "tests" / "boards"), str(REPO / "tests"), str(REPO / "scripts")]

import boards  # noqa: E402
from conftest import TOKEN, start_on_board  # noqa: E402  (tests/boards/conftest.py)
from helpers import KernelSession, start_board  # noqa: E402
from PIL import Image  # noqa: E402

from rpyc_ikernel.board import Address, Board  # noqa: E402
from rpyc_ikernel.link import close_connection  # noqa: E402

CAMERA = """
import base64, io, zlib
jpeg = base64.b64decode({jpeg!r})
sensor = bytes(320 * 240 * 3)
def camera():
    global img_buffer, produced
    produced = 0
    while True:
        produced += 1
        zlib.compress(sensor, 1)  # C work that releases the GIL, as an encoder does
        img_buffer = io.BytesIO(jpeg + produced.to_bytes(4, "big"))
"""
NAMESPACE = "import _rpyc_ikernel_agent as _a\n_ns = _a.SESSIONS[{session_id!r}].namespace"


def jpeg_320x240() -> str:
    out = io.BytesIO()
    Image.effect_mandelbrot((320, 240), (-2, -1.2, 1, 1.2), 60).convert("RGB").save(out, "JPEG", quality=85)
    return base64.b64encode(out.getvalue()).decode()


def stream_fps(kernel: KernelSession, seconds: float) -> float:
    msg_id = kernel.client.execute('# exec(self.display("img_buffer", interval=0.05))\ncamera()')
    count, started, display_id = 0, None, None
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            msg = kernel.client.get_iopub_msg(timeout=1)
        except queue.Empty:
            continue
        transient = msg["content"].get("transient") or {}
        if msg["msg_type"] == "display_data" and transient.get("display_id"):
            display_id = transient["display_id"]
        elif msg["msg_type"] == "update_display_data" and transient.get("display_id") == display_id:
            if started is None:
                started, deadline = time.monotonic(), time.monotonic() + seconds
            else:
                count += 1
    fps = count / (time.monotonic() - started)
    stop(kernel, msg_id)
    return fps


def raw_pull_fps(kernel: KernelSession, port: int, session_id: str, seconds: float) -> float:
    msg_id = kernel.client.execute("camera()")
    time.sleep(2)
    conn, _ = Board(Address("127.0.0.1", port), "bench").open_connection()
    try:
        conn._channel.compress = False
        conn.root.getconn()._channel.compress = False
        conn.execute(NAMESPACE.format(session_id=session_id))
        count, last, started = 0, None, time.monotonic()
        while time.monotonic() - started < seconds:
            frame = conn.eval("_ns['img_buffer'].getvalue()")
            if frame != last:
                count, last = count + 1, frame
        fps = count / (time.monotonic() - started)
    finally:
        close_connection(conn)
    stop(kernel, msg_id)
    return fps


def stop(kernel: KernelSession, msg_id: str) -> None:
    kernel.manager.interrupt_kernel()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            reply = kernel.client.get_shell_msg(timeout=1)
        except queue.Empty:
            continue
        if reply["parent_header"].get("msg_id") == msg_id:
            break
    time.sleep(1.5)  # the agent's frame tick and switch interval go back to rest


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--board", default="bookworm-armhf", help="a board of scripts/boards.py, or 'host'")
    parser.add_argument("--seconds", type=float, default=8.0)
    args = parser.parse_args()
    os.environ["RPYC_IKERNEL_TOKEN"] = TOKEN
    prefix = tempfile.mkdtemp(prefix="rpyc-kernelspec-")
    subprocess.run(
        [sys.executable, "-m", "rpyc_ikernel.install", "--prefix", prefix], check=True, capture_output=True
    )
    os.environ["JUPYTER_PATH"] = str(Path(prefix) / "share" / "jupyter")
    if args.board == "host":
        server = start_board()  # with the token set above
    else:
        board = next(b for b in boards.BOARDS if b.name == args.board)
        server = start_on_board(
            board, REPO / "rpyc_ikernel" / "server.py", ["--host", "127.0.0.1"], Path("/tmp")
        )
    kernel = None
    try:
        kernel = KernelSession.start(board_port=server.port, env={"RPYC_IKERNEL_TOKEN": TOKEN})
        connect = f'# exec(self.connect_remote("127.0.0.1", port={server.port}, timeout=120))'
        assert kernel.run(connect, timeout=180).status == "ok"
        assert kernel.run(CAMERA.format(jpeg=jpeg_320x240()), timeout=120).status == "ok"
        session_id = kernel.run("# exec(print(self.session_id))").stream().strip()
        stream = stream_fps(kernel, args.seconds)
        raw = raw_pull_fps(kernel, server.port, session_id, args.seconds)
        print(f"{args.board}: stream at interval 0.05 {stream:.1f} frames/s, raw pull {raw:.1f} frames/s,")
        print(
            f"    stream / raw pull {stream / raw:.2f}; stream / min(20, raw) {stream / min(20.0, raw):.2f}"
        )
    finally:
        if kernel is not None:
            kernel.stop()
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
