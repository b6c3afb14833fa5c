"""rpyc 5.x and 6.x frame messages differently; kernels and boards of either version work together.

Boards run as real processes on 127.0.0.1 with rpyc 5.3.1 (installed once with pip --target into the
repo's ignored out/ directory) or the venv's rpyc 6: our server file run on its own (as copied to a
board), and the README's plain classic server (SlaveService, and the full-duplex ClassicService that
asks the kernel for its root before it answers anything). Kernels run with either rpyc too.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import PLAIN_BOARD, REPO, KernelSession, reply_to, start_board, wait_for_iopub
from proxy import Proxy

RPYC5 = "5.3.1"
SERVER_FILE = REPO / "rpyc_ikernel" / "server.py"


@pytest.fixture(scope="session")
def rpyc5_path() -> Path:
    """A directory holding rpyc 5.3.1 alone, for PYTHONPATH (pip --target, cached in out/)."""
    target = REPO / "out" / f"rpyc-{RPYC5}"
    if not (target / "rpyc" / "__init__.py").is_file():
        # test workers may run this side by side: each installs into its own directory, the first
        # finished one takes the name, the others see it taken and throw theirs away
        partial = target.with_name(f"{target.name}.partial-{os.getpid()}")
        shutil.rmtree(partial, ignore_errors=True)
        pip = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(partial)]
        done = subprocess.run([*pip, f"rpyc=={RPYC5}"], capture_output=True, text=True)
        if done.returncode != 0:
            pytest.skip(f"cannot install rpyc {RPYC5}: {done.stderr.strip().splitlines()[-1:]}")
        if not (target / "rpyc" / "__init__.py").is_file():
            shutil.rmtree(target, ignore_errors=True)
            try:
                partial.rename(target)
            except OSError:  # another worker's copy took the name meanwhile
                pass
        shutil.rmtree(partial, ignore_errors=True)
    return target


def _env(rpyc_path: Path | None) -> dict:
    env = dict(os.environ)
    if rpyc_path is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(rpyc_path), *filter(None, [env.get("PYTHONPATH")])])
    return env


def _board(kind: str, rpyc_path: Path | None, tmp_path: Path):
    """A board server process: ours (the single file, as copied to a board) or rpyc's plain one."""
    python = [sys.executable, "-X", "utf8"]
    if kind == "ours":
        board_dir = tmp_path / "board"
        board_dir.mkdir(exist_ok=True)
        shutil.copy(SERVER_FILE, board_dir / "server.py")  # no rpyc_ikernel package on the board
        command = [*python, str(board_dir / "server.py"), "--host", "127.0.0.1"]
        return start_board(command=command, cwd=board_dir, env=_env(rpyc_path))
    command = [*python, str(PLAIN_BOARD), *(["--classic"] if kind == "classic" else [])]
    return start_board(command=command, cwd=tmp_path, env=_env(rpyc_path))


BOARDS = [
    ("ours", 6),
    ("ours", 5),
    ("plain", 6),
    ("plain", 5),
    ("classic", 6),
    ("classic", 5),
]


@pytest.mark.parametrize("kernel_rpyc", [6, 5], ids=["kernel-rpyc6", "kernel-rpyc5"])
@pytest.mark.parametrize("kind,board_rpyc", BOARDS, ids=[f"{k}-rpyc{v}" for k, v in BOARDS])
def test_a_cell_prints_and_returns(kernelspec_prefix, rpyc5_path, tmp_path, kind, board_rpyc, kernel_rpyc):
    board = _board(kind, rpyc5_path if board_rpyc == 5 else None, tmp_path)
    session = KernelSession.start(
        board_port=board.port, env={"PYTHONPATH": _env(rpyc5_path)["PYTHONPATH"]} if kernel_rpyc == 5 else {}
    )
    try:
        local = session.run("# exec(print(__import__('rpyc').__version__))").stream()
        assert local.split(".")[0] == str(kernel_rpyc)  # the kernel really runs that rpyc
        cell = session.run("import rpyc\nprint('board rpyc', rpyc.__version__)\n6 * 7")
        assert cell.status == "ok", cell.reply
        assert cell.stream().startswith(f"board rpyc {board_rpyc}.")
        assert cell.result == {"text/plain": "42"}
        rows = dict(
            line.split(None, 1) for line in session.run("# exec(self.status())").stream().splitlines()
        )
        if kind == "ours":
            assert rows["auth"] == "token (challenge-response)"
        else:
            assert rows["auth"].startswith("none")
    finally:
        session.stop()
        board.stop()


def connections_settled(proxy: Proxy, expected: int, timeout: float = 15.0) -> int:
    """The proxy's connection count once background connects are done (or `expected` never came)."""
    deadline = time.monotonic() + timeout
    while proxy.connections < expected and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)  # one more would show by now
    return proxy.connections


def test_the_wire_of_a_board_is_detected_once_and_remembered(kernelspec_prefix, rpyc5_path, tmp_path):
    """A plain rpyc 5 board hangs up on a 6-format hello: one more connection the first time only."""
    board = _board("plain", rpyc5_path, tmp_path)
    proxy = Proxy(board.port)
    session = KernelSession.start(
        board_port=proxy.port, env={"RPYC_IKERNEL_FORWARD": f"127.0.0.1:{board.port}"}
    )
    try:
        assert session.run("kept = 5").status == "ok"
        # the 6-format hello, then the 5-format one; then the side link (interrupts, transfers) that
        # the kernel opens in the background right after the main connect, in rpyc 5 at once
        assert connections_settled(proxy, 3) == 3
        assert proxy.drop_all() >= 1
        cell = session.run("kept + 1")
        assert cell.result == {"text/plain": "6"}
        assert connections_settled(proxy, 5) == 5  # the reconnect (and its side link) spoke rpyc 5 at once
    finally:
        session.stop()
        proxy.close()
        board.stop()


PIPELINED = [("ours", 5), ("plain", 5), ("ours", 6)]


@pytest.mark.parametrize("kernel_rpyc", [6, 5], ids=["kernel-rpyc6", "kernel-rpyc5"])
@pytest.mark.parametrize("kind,board_rpyc", PIPELINED, ids=[f"{k}-rpyc{v}" for k, v in PIPELINED])
def test_first_interrupt_and_pipelined_transfers(
    kernelspec_prefix, rpyc5_path, tmp_path, kind, board_rpyc, kernel_rpyc
):
    """The side link opened ahead takes the first interrupt; transfers pipeline their chunks on it."""
    board = _board(kind, rpyc5_path if board_rpyc == 5 else None, tmp_path)
    session = KernelSession.start(
        board_port=board.port, env={"PYTHONPATH": _env(rpyc5_path)["PYTHONPATH"]} if kernel_rpyc == 5 else {}
    )
    try:
        msg_id = session.client.execute("import time\ntime.sleep(30)")
        wait_for_iopub(session.client, msg_id)
        time.sleep(1.0)
        session.manager.interrupt_kernel()
        reply = shell_reply(session, msg_id)
        assert reply["status"] == "error" and reply["ename"] == "KeyboardInterrupt", reply
        data = os.urandom(3 * 1024 * 1024 + 17)
        (tmp_path / "local.bin").write_bytes(data)
        up = session.run(
            f"# exec(self.upload({str(tmp_path / 'local.bin')!r}, {str(tmp_path / 'up.bin')!r}))"
        )
        assert up.status == "ok", up.error
        down = session.run(
            f"# exec(self.download({str(tmp_path / 'up.bin')!r}, {str(tmp_path / 'down.bin')!r}))"
        )
        assert down.status == "ok", down.error
        assert (tmp_path / "up.bin").read_bytes() == data and (tmp_path / "down.bin").read_bytes() == data
    finally:
        session.stop()
        board.stop()


def shell_reply(session: KernelSession, msg_id: str) -> dict:
    """The content of the reply to msg_id (earlier replies, e.g. kernel_info's, are skipped)."""
    return reply_to(session.client, msg_id)["content"]
