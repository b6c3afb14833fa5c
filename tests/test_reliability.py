"""Dead boards, dropped links, restarts, long cells and peers that are not boards."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time

import pytest
from helpers import KernelSession, free_port, start_board, wait_for_port
from proxy import Proxy


@pytest.fixture()
def own_board():
    """A board server this test may kill or restart."""
    server = start_board()
    yield server
    server.stop()


@pytest.fixture()
def proxied(kernelspec_prefix, own_board):
    """A kernel that reaches `own_board` through a proxy the test controls."""
    proxy = Proxy(own_board.port)
    session = KernelSession.start(board_port=proxy.port)
    yield session, proxy
    session.stop()
    proxy.close()


def test_board_killed_mid_cell_gives_clear_error_and_kernel_recovers(kernelspec_prefix, own_board):
    session = KernelSession.start(board_port=own_board.port)
    try:
        assert session.run("before = 1").status == "ok"
        killer = threading.Timer(1.0, lambda: own_board.process.send_signal(signal.SIGKILL))
        killer.start()
        start = time.monotonic()
        cell = session.run("import time\nprint('working', flush=True)\ntime.sleep(30)")
        elapsed = time.monotonic() - start
        assert cell.status == "error"
        assert elapsed < 10
        assert "working\n" in cell.stream()
        assert cell.reply["ename"] == "BoardConnectionLost"
        assert f"127.0.0.1:{own_board.port}" in cell.reply["evalue"]

        # while the board is down, a cell says so, and the kernel stays alive
        down = session.run("1")
        assert down.reply["ename"] == "BoardUnreachable"
        assert session.run('# exec(print("kernel alive"))').stream() == "kernel alive\n"

        restarted = start_board(port=own_board.port)
        try:
            back = session.run("'back'")
            assert back.result == {"text/plain": "'back'"}
            assert "restarted" in back.stream("stderr")
            gone = session.run("before")
            assert gone.reply["ename"] == "NameError"
        finally:
            restarted.stop()
    finally:
        session.stop()


def test_dropped_link_between_cells_keeps_the_namespace(proxied):
    session, proxy = proxied
    assert session.run("import os\nkept = 41").status == "ok"
    assert proxy.drop_all() >= 1
    cell = session.run("kept + 1")
    assert cell.result == {"text/plain": "42"}
    notice = cell.stream("stderr")
    assert "reconnected" in notice and "variables kept" in notice
    assert notice.count("\n") == 1  # one line


def test_dropped_link_mid_cell_resumes_without_losing_output(proxied):
    session, proxy = proxied
    dropper = threading.Timer(1.0, proxy.drop_all)
    dropper.start()
    cell = session.run(
        "import time\nfor i in range(30):\n    print(i, flush=True)\n    time.sleep(0.1)\n'done'"
    )
    dropper.join()
    assert cell.status == "ok"
    assert cell.stream() == "".join(f"{i}\n" for i in range(30))
    assert cell.result == {"text/plain": "'done'"}
    assert "reconnected" in cell.stream("stderr")
    assert proxy.connections >= 2


def test_dead_host_mid_cell_ends_the_cell_within_ten_seconds(proxied):
    session, proxy = proxied
    assert session.run("x = 1").status == "ok"
    threading.Timer(1.0, lambda: setattr(proxy, "blackhole", True)).start()
    start = time.monotonic()
    cell = session.run("import time\ntime.sleep(60)")
    elapsed = time.monotonic() - start
    assert cell.status == "error"
    assert cell.reply["ename"] in ("BoardConnectionLost", "BoardUnreachable")
    assert elapsed < 11
    proxy.blackhole = False
    proxy.drop_all()
    # the board never went away: after the link is back, the old cell may still be sleeping there
    recovered = session.run("x")
    assert recovered.status == "error" or recovered.result == {"text/plain": "1"}


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_long_cells_never_time_out(kernelspec_prefix, board):
    """90 s cells, one printing now and then and one silent, run side by side in two kernels."""
    second_board = start_board()  # our server runs one cell at a time: one board per kernel
    loud = KernelSession.start(board_port=board.port)
    quiet = KernelSession.start(board_port=second_board.port)
    results = {}

    def run(name, session, code):
        results[name] = session.run(code, timeout=200)

    try:
        threads = [
            threading.Thread(
                target=run,
                args=(
                    "loud",
                    loud,
                    "import time\nfor i in range(9):\n    time.sleep(10)\n    print(i)\n'loud done'",
                ),
            ),
            threading.Thread(target=run, args=("quiet", quiet, "import time\ntime.sleep(90)\n'quiet done'")),
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(300)
        assert results["loud"].result == {"text/plain": "'loud done'"}
        assert results["loud"].stream() == "".join(f"{i}\n" for i in range(9))
        assert results["quiet"].result == {"text/plain": "'quiet done'"}
    finally:
        loud.stop()
        quiet.stop()
        second_board.stop()


def test_http_server_is_not_a_board(kernelspec_prefix, tmp_path):
    port = free_port()
    http = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(tmp_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    session = None
    try:
        wait_for_port(port)
        session = KernelSession.start(board_port=port)
        start = time.monotonic()
        cell = session.run("1")
        assert time.monotonic() - start < 5
        assert cell.reply["ename"] == "BoardUnreachable"
        assert "did not answer as an rpyc" in cell.reply["evalue"]
    finally:
        if session:
            session.stop()
        http.terminate()
        http.wait(10)
