"""Output written below Python while a cell runs (child processes, C code writing to fds 1 and 2)
reaches the cell, as in ipykernel; the server's own log and output between cells stay on its terminal.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from helpers import REPO, BoardServer, KernelSession, free_port, start_board

PLAIN_BOARD = Path(__file__).with_name("plain_board.py")


@pytest.fixture(scope="module")
def board_and_kernel(kernelspec_prefix, tmp_path_factory):
    """Our board server, started without probing its port (so its log starts clean), and a kernel."""
    port = free_port()
    log = tmp_path_factory.mktemp("board") / "server.log"
    with log.open("w") as handle:
        process = subprocess.Popen(
            [sys.executable, "-m", "rpyc_ikernel.server", "--host", "127.0.0.1", "--port", str(port)],
            stdout=handle,
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )
    server = BoardServer(process, port, log)
    deadline = time.monotonic() + 30
    while "listening on" not in server.output():
        assert time.monotonic() < deadline, server.output()
        time.sleep(0.05)
    kernel = KernelSession.start(board_port=port)
    yield server, kernel
    kernel.stop()
    server.stop()


@pytest.fixture(scope="module")
def kernel(board_and_kernel):
    return board_and_kernel[1]


@pytest.fixture(scope="module")
def server(board_and_kernel):
    return board_and_kernel[0]


def eventually(check, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return check()


def test_subprocess_output_reaches_the_cell(kernel, server):
    cell = kernel.run("import subprocess\nsubprocess.run(['echo', 'hi from a child'])")
    assert cell.status == "ok", cell.error
    assert cell.stream("stdout") == "hi from a child\n"
    assert "hi from a child" not in server.output()


def test_os_system_stdout_and_stderr_reach_their_streams(kernel, server):
    cell = kernel.run("import os\nstatus = os.system('echo hi; echo err >&2')\nstatus")
    assert cell.result == {"text/plain": "0"}
    assert cell.stream("stdout") == "hi\n"
    assert cell.stream("stderr") == "err\n"
    assert "err" not in server.output().replace("handshake", "")


def test_c_level_writes_reach_the_cell(kernel):
    """os.write is what C code does; printf through ctypes is buffered by C stdio and flushed at the end."""
    cell = kernel.run(
        "import os, ctypes\n"
        "os.write(1, b'fd one\\n')\n"
        "os.write(2, b'fd two\\n')\n"
        "libc = ctypes.CDLL(None)\n"
        "libc.printf(b'printf %d\\n', 42)"
    )
    assert cell.status == "ok", cell.error
    assert cell.stream("stdout") == "fd one\nprintf 42\n"
    assert cell.stream("stderr") == "fd two\n"


def test_child_output_keeps_its_place_between_prints(kernel):
    cell = kernel.run(
        "import subprocess\n"
        "for i in range(15):\n"
        "    print('python', i)\n"
        "    subprocess.run(['echo', 'child %d' % i])\n"
        "print('end')"
    )
    expected = "".join(f"python {i}\nchild {i}\n" for i in range(15)) + "end\n"
    assert cell.stream() == expected


def test_big_child_output_is_complete(kernel):
    """More than a pipe holds: the reader keeps the child going while the cell waits for it."""
    cell = kernel.run("import subprocess\nsubprocess.run(['seq', '1', '200000']).returncode", timeout=120)
    assert cell.result == {"text/plain": "0"}
    lines = cell.stream().splitlines()
    assert len(lines) == 200000
    assert lines[0] == "1" and lines[-1] == "200000"


def test_shell_magics_show_their_output_once(kernel):
    cell = kernel.run("!echo bang; echo bang-err >&2")
    assert cell.stream("stdout") + cell.stream("stderr") == "bang\nbang-err\n"
    cell = kernel.run("%%bash\necho from bash\necho bash-err >&2")
    assert cell.stream("stdout") + cell.stream("stderr") == "from bash\nbash-err\n"
    cell = kernel.run("lines = !echo one; echo two\nprint(lines)")
    assert cell.stream() == "['one', 'two']\n"


def test_between_cells_fd_output_goes_to_the_servers_terminal(kernel, server):
    cell = kernel.run(
        "import os, threading\n"
        "threading.Timer(1.0, lambda: os.write(1, b'written between cells\\n')).start()\n"
        "print('cell done')"
    )
    assert cell.stream() == "cell done\n"
    assert eventually(lambda: "written between cells" in server.output())
    after = kernel.run("print('next cell')")
    assert after.stream() == "next cell\n"


def test_a_background_child_keeps_writing_to_the_last_cell(kernel, server):
    """Like Python threads a cell started: a child still running after its cell shows in the last cell."""
    cell = kernel.run(
        "import subprocess\nchild = subprocess.Popen(['sh', '-c', 'sleep 0.5; echo late child'])"
    )
    assert cell.status == "ok"
    time.sleep(1.5)
    late = kernel.run("child.wait()\nprint('after')")
    assert late.stream() == "late child\nafter\n"
    assert "late child" not in server.output()


def test_the_servers_log_stays_on_its_terminal_during_a_cell(kernel, server):
    """Other threads of the board process (connections, the server's log) never write into the cell."""
    started = threading.Event()

    def bad_connection():
        started.wait(30)
        time.sleep(0.3)
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
            sock.sendall(b"not a handshake\n" * 4)
            time.sleep(0.2)

    thread = threading.Thread(target=bad_connection, daemon=True)
    thread.start()

    def hook(msg):
        if msg["msg_type"] == "stream":
            started.set()

    outputs = []
    reply = kernel.client.execute_interactive(
        "import time, os\nprint('start', flush=True)\nfor i in range(20):\n    os.write(2, b'.')\n"
        "    time.sleep(0.1)\nprint('end')",
        timeout=60,
        output_hook=lambda msg: (hook(msg), outputs.append(msg)),
    )
    thread.join(10)
    assert reply["content"]["status"] == "ok"
    text = "".join(m["content"].get("text", "") for m in outputs if m["msg_type"] == "stream")
    assert "handshake" not in text
    assert text.replace(".", "") == "start\nend\n" and text.count(".") == 20
    assert eventually(lambda: "handshake failed" in server.output())


def test_an_interrupted_child_leaves_the_fds_restored(kernel, server):
    timer = threading.Timer(1.0, kernel.manager.interrupt_kernel)
    timer.start()
    cell = kernel.run("import subprocess\nprint('waiting')\nsubprocess.run(['sleep', '30'])", timeout=60)
    timer.cancel()
    assert cell.reply["ename"] == "KeyboardInterrupt"
    assert cell.stream() == "waiting\n"
    assert kernel.run("import os\nos.system('echo again')").stream() == "again\n"
    kernel.run("import threading\nthreading.Timer(0.5, lambda: os.write(2, b'terminal again\\n')).start()")
    assert eventually(lambda: "terminal again" in server.output())


def test_child_output_on_a_plain_board(kernelspec_prefix, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    board = start_board(command=[sys.executable, str(PLAIN_BOARD)], cwd=tmp_path, env=env)
    session = KernelSession.start(board_port=board.port)
    try:
        cell = session.run(
            "import os, subprocess\nprint('a')\nsubprocess.run(['echo', 'b'])\nos.system('echo c >&2')"
        )
        assert cell.stream("stdout") == "a\nb\n"
        assert cell.stream("stderr") == "c\n"
        assert "b\n" not in board.output()
    finally:
        session.stop()
        board.stop()
