"""Boards of other Pythons, rpyc versions and architectures (scripts/boards.py builds them).

Every test here is marked `boards`. A board that is not built skips (build them with
`make test-boards`, or `python3 scripts/boards.py build`), so a plain `make test` costs nothing here.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from helpers import REPO, BoardServer, KernelSession, free_port, wait_for_port
from proxy import Proxy

sys.path.insert(0, str(REPO / "scripts"))
import boards  # noqa: E402  (scripts/boards.py)

TOKEN = "board-test-token-not-secret"
SERVER_START = 120.0  # seconds for a board server to listen: Python under qemu imports slowly
EMULATED_CONNECT = 60.0  # connect timeout for emulated boards: loading the agent there takes seconds


def pytest_collection_modifyitems(items):
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.boards)


def speaks_rpyc5() -> bool:
    """Whether this kernel can drive boards on rpyc 5's wire (the compat layer)."""
    return importlib.util.find_spec("rpyc_ikernel.compat") is not None


def usable(board: boards.Board) -> boards.Board:
    """The board, or a skip saying why it cannot run here."""
    why = None
    if not board.built():
        why = f"board {board.name} is not built (make test-boards builds it)"
    elif board.known_facts()["rpyc"].startswith("5.") and not speaks_rpyc5():
        why = f"board {board.name} runs rpyc 5: this kernel has no rpyc 5 wire (rpyc_ikernel.compat)"
    if why and os.environ.get("RPYC_IKERNEL_BOARDS_REQUIRED"):  # make test-boards: a skip would hide it
        pytest.fail(why)
    if why:
        pytest.skip(why)
    return board


class BoardProcess(BoardServer):
    """A server process on a board; stopping it stops its whole process group (chroot, qemu)."""

    def stop(self) -> None:
        boards.stop_process(self.process)


def start_on_board(board: boards.Board, script: Path, args: list[str], log_dir: Path) -> BoardProcess:
    """Copy `script` into the board user's home and run it there with python3, listening on 127.0.0.1."""
    shutil.copy(script, board.host_path(board.home) / script.name)
    port = free_port()
    log = log_dir / f"{board.name}-{script.stem}-{port}.log"
    with log.open("w") as out:
        process = board.popen(
            ["python3", script.name, *args, "--port", str(port)],
            env={"RPYC_IKERNEL_TOKEN": TOKEN},
            stdout=out,
            stderr=out,
        )
    server = BoardProcess(process, port, log)
    deadline = time.monotonic() + SERVER_START
    while process.poll() is None and time.monotonic() < deadline:
        try:
            wait_for_port(port, 1.0)
            return server
        except TimeoutError:
            continue
    server.stop()
    raise RuntimeError(f"server on {board.name} did not start: {server.output()}")


@dataclass
class BoardRun:
    """A board server, a proxy in front of it (the link tests cut), and a kernel connected through it."""

    board: boards.Board
    server: BoardProcess
    proxy: Proxy
    kernel: KernelSession
    connected: str  # what the connect cell printed

    @property
    def facts(self) -> dict:
        return self.board.known_facts()


def connect_cell(board: boards.Board, port: int) -> str:
    """The cell a user types to pick this board; slow (emulated) boards get a longer timeout."""
    timeout = f", timeout={EMULATED_CONNECT:.0f}" if board.emulated else ""
    return f'# exec(self.connect_remote("127.0.0.1", port={port}{timeout}))'


def open_run(board: boards.Board, script: Path, args: list[str], log_dir: Path, token: bool) -> BoardRun:
    server = start_on_board(board, script, args, log_dir)
    proxy = Proxy(server.port)
    forward = {"RPYC_IKERNEL_FORWARD": f"127.0.0.1:{server.port}"}  # the proxy is a forward of ours
    kernel = KernelSession.start(
        board_port=proxy.port, env={**forward, "RPYC_IKERNEL_TOKEN": TOKEN} if token else forward
    )
    started = time.monotonic()
    cell = kernel.run(connect_cell(board, proxy.port), timeout=EMULATED_CONNECT + 30)
    if cell.status != "ok":
        kernel.stop()
        proxy.close()
        server.stop()
        pytest.fail(f"cannot connect to {board.name}: {cell.error}\n{server.output()}")
    print(f"{board.name}: connected in {time.monotonic() - started:.1f} s")
    return BoardRun(board, server, proxy, kernel, cell.stream())


def close_run(run: BoardRun) -> None:
    run.kernel.stop()
    run.proxy.close()
    run.server.stop()


@pytest.fixture(scope="module", params=[board.name for board in boards.BOARDS])
def board(request) -> boards.Board:
    """One board per parameter; tests are grouped by board, so each board's servers start once."""
    return usable(boards.board_named(request.param))


@pytest.fixture(scope="module")
def ours(board, kernelspec_prefix, tmp_path_factory) -> BoardRun:
    """Our server.py, copied onto the board and started there as a user would: python3 server.py."""
    run = open_run(
        board,
        REPO / "rpyc_ikernel" / "server.py",
        ["--host", "127.0.0.1"],
        tmp_path_factory.mktemp("logs"),
        True,
    )
    yield run
    close_run(run)


@pytest.fixture(scope="module")
def seed(board, kernelspec_prefix, tmp_path_factory) -> BoardRun:
    """The README's plain rpyc classic script on the board (nothing of ours there)."""
    run = open_run(board, REPO / "tests" / "plain_board.py", [], tmp_path_factory.mktemp("logs"), False)
    yield run
    close_run(run)
