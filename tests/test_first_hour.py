"""The first hour on a real board (issue 21): each documented path works as written.

Boards on USB (the token is read through adb), the wording of a missing token and of a refused
connection, what install writes and removes, and the board server's terminal (Ctrl-C, process title).
adb is tests/fake_adb/adb, whose "device" is this machine; FAKE_ADB_HOME gives its shell the board
user's home, so the board server's token file is not the kernel's.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import KernelSession, start_board

FAKE_ADB_DIR = Path(__file__).with_name("fake_adb")
SERVER = [sys.executable, "-m", "rpyc_ikernel.server", "--host", "127.0.0.1"]


@pytest.fixture()
def usb_board(tmp_path):
    """Our board server run by a 'board user' whose home is not the kernel's, reached by fake adb.

    Yields (server, kernel env): the kernel's config dir holds no token for this board.
    """
    home = tmp_path / "board-home"
    home.mkdir()
    board_env = {k: v for k, v in os.environ.items() if k != "XDG_CONFIG_HOME"}
    board_env["HOME"] = str(home)
    server = start_board(command=SERVER, env=board_env)
    kernel_env = {
        "PATH": f"{FAKE_ADB_DIR}{os.pathsep}{os.environ['PATH']}",
        "FAKE_ADB_STATE": str(tmp_path / "adb-state"),
        "FAKE_ADB_PYTHON": sys.executable,
        "FAKE_ADB_DEVICES": "FAKE0001",
        "FAKE_ADB_HOME": str(home),
        "XDG_CONFIG_HOME": str(tmp_path / "laptop-config"),  # no token of this board here
    }
    yield server, kernel_env, home
    server.stop()
    for path in (tmp_path / "adb-state").glob("forward-*.json"):  # forwarders a failed test left behind
        try:
            os.kill(json.loads(path.read_text())["pid"], 15)
        except ProcessLookupError:
            pass


# ----------------------------------------------------------------------------- 1: boards on USB


def test_an_adb_board_s_token_is_read_through_adb_and_said_once(kernelspec_prefix, usb_board):
    server, env, home = usb_board
    session = KernelSession.start(board_port=server.port, env=env)
    try:
        cell = session.run(f"# exec(self.connect_adb(port={server.port}))\nimport os\nos.getpid()")
        assert cell.status == "ok", cell.error
        assert cell.result == {"text/plain": str(server.process.pid)}
        said = cell.stream("stderr")
        assert said.count("read the board's token through adb") == 1, said
        assert "adb shell cat ~/.config/rpyc_ikernel/token" in said
        for code in ("1 + 1", "# exec(self.board.close())\n1 + 1"):  # a later cell, a reconnect
            again = session.run(code)
            assert again.result == {"text/plain": "2"}, again.error
            assert "through adb" not in again.stream("stderr")  # once per board chosen
    finally:
        session.stop()


def test_connect_adb_takes_a_token_like_connect_remote(kernelspec_prefix, usb_board):
    server, env, home = usb_board
    token = (home / ".config" / "rpyc_ikernel" / "token").read_text().strip()
    session = KernelSession.start(board_port=server.port, env={**env, "FAKE_ADB_HOME": str(home / "nobody")})
    try:
        wrong = session.run(f"# exec(self.connect_adb(port={server.port}, token='x' * 20))")
        assert wrong.reply["ename"] == "BoardAuthError"
        assert "refused the token given" in wrong.reply["evalue"]
        cell = session.run(f"# exec(self.connect_adb(port={server.port}, token={token!r}))\n3")
        assert cell.result == {"text/plain": "3"}, cell.error
        assert "through adb" not in cell.stream("stderr")
    finally:
        session.stop()


def test_an_adb_board_whose_token_adb_cannot_read_names_the_board_path(kernelspec_prefix, usb_board):
    server, env, home = usb_board
    session = KernelSession.start(board_port=server.port, env={**env, "FAKE_ADB_HOME": str(home / "nobody")})
    try:
        cell = session.run(f"# exec(self.connect_adb(port={server.port}))")
        assert cell.reply["ename"] == "BoardAuthError"
        message = cell.reply["evalue"]
        assert "\n" not in message
        assert "adb shell could not read it" in message
        assert "connect_adb(..., token=...)" in message
        assert "~/.config/rpyc_ikernel/token of the user running it" in message
    finally:
        session.stop()


def test_an_adb_preset_reads_the_token_too(kernelspec_prefix, usb_board):
    server, env, home = usb_board
    preset = {**env, "RPYC_IKERNEL_ADB": "1", "RPYC_IKERNEL_PORT": str(server.port)}
    session = KernelSession.start(env=preset)
    try:
        cell = session.run("import os\nos.getpid()")
        assert cell.result == {"text/plain": str(server.process.pid)}, cell.error
        assert "read the board's token through adb" in cell.stream("stderr")
    finally:
        session.stop()


# ----------------------------------------------------------------------------- 2: a missing token


def test_a_missing_token_names_the_board_s_token_file_and_how_to_show_it(kernelspec_prefix, tmp_path):
    board_env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "board-config")}
    server = start_board(command=SERVER, env=board_env)
    laptop = tmp_path / "laptop-config"
    session = KernelSession.start(board_port=server.port, env={"XDG_CONFIG_HOME": str(laptop)})
    try:
        message = session.run("1").reply["evalue"]
        assert "requires a token" in message
        assert str(laptop) not in message  # not the kernel's own path
        assert "~/.config/rpyc_ikernel/token of the user running it" in message
        assert "cat ~/.config/rpyc_ikernel/token" in message
        assert "connect_remote(..., token=...)" in message
    finally:
        session.stop()
        server.stop()


# ----------------------------------------------------------------------------- 3: connection refused


@pytest.mark.parametrize(
    "host, advice",
    [
        ("192.168.1.5", "python3 server.py --host 0.0.0.0 --port 18812"),
        ("raspberrypi.local", "python3 server.py --host 0.0.0.0 --port 18812"),
        ("127.0.0.1", "start the board server there (python3 server.py --port 18812)"),
        ("localhost", "start the board server there (python3 server.py --port 18812)"),
    ],
)
def test_refused_advice_says_host_0_0_0_0_for_a_board_elsewhere(host, advice):
    """The advice of 'connection refused' (no dialling here: only the text for that address)."""
    from rpyc_ikernel.connector import Address, Connector

    hint = Connector(Address(host, 18812)).hint()
    assert advice in hint
    assert ("--host" in hint) == (host not in ("127.0.0.1", "localhost"))


def test_a_refused_loopback_board_is_one_line_with_the_start_command(kernelspec_prefix):
    from helpers import free_port

    port = free_port()
    session = KernelSession.start(board_port=port)
    try:
        message = session.run("1").reply["evalue"]
        assert message.startswith(f"cannot reach board 127.0.0.1:{port}: connection refused")
        assert f"python3 server.py --port {port}" in message and "\n" not in message
    finally:
        session.stop()


# ----------------------------------------------------------------------------- 4, 5: install


def run_install(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "rpyc_ikernel.install", *args], input=stdin, capture_output=True, text=True
    )


def spec_env(prefix: Path, name: str = "rpyc") -> dict:
    return json.loads((prefix / "share" / "jupyter" / "kernels" / name / "kernel.json").read_text())["env"]


def test_uninstall_removes_only_kernelspecs_this_package_made(tmp_path):
    kernels = tmp_path / "share" / "jupyter" / "kernels"
    stock = kernels / "python3"
    stock.mkdir(parents=True)
    (stock / "kernel.json").write_text(
        json.dumps({"argv": ["python3", "-m", "ipykernel_launcher", "-f", "{connection_file}"]})
    )
    refused = run_install("--prefix", str(tmp_path), "--uninstall", "--name", "python3")
    assert refused.returncode == 1
    assert refused.stderr.strip().count("\n") == 0
    assert (
        "not made by rpyc_ikernel" in refused.stderr and "jupyter kernelspec remove python3" in refused.stderr
    )
    assert (stock / "kernel.json").is_file()
    missing = run_install("--prefix", str(tmp_path), "--uninstall", "--name", "no-such-board")
    assert missing.returncode == 1 and "Traceback" not in missing.stderr
    assert "No kernelspec named 'no-such-board'" in missing.stderr
    assert run_install("--prefix", str(tmp_path), "--name", "pi").returncode == 0
    assert run_install("--prefix", str(tmp_path), "--uninstall", "--name", "pi").returncode == 0
    assert not (kernels / "pi").exists()


def test_uninstall_without_a_place_leaves_a_foreign_kernelspec_and_never_raises(tmp_path):
    stock = tmp_path / "data" / "kernels" / "python3"
    stock.mkdir(parents=True)
    (stock / "kernel.json").write_text(json.dumps({"argv": ["python3", "-m", "ipykernel_launcher"]}))
    env = dict(os.environ, JUPYTER_PATH=str(tmp_path / "data"))
    for name, expected in [("python3", "not made by rpyc_ikernel"), ("nothing-here", "No kernelspec named")]:
        done = subprocess.run(
            [sys.executable, "-m", "rpyc_ikernel.install", "--uninstall", "--name", name],
            capture_output=True,
            text=True,
            env=env,
        )
        assert done.returncode == 1 and expected in done.stderr and "Traceback" not in done.stderr
    assert (stock / "kernel.json").is_file()


def test_install_token_dash_reads_the_token_from_stdin(tmp_path):
    done = run_install("--prefix", str(tmp_path), "--token", "-", stdin="b0ard-t0ken-from-stdin\n")
    assert done.returncode == 0, done.stderr
    assert spec_env(tmp_path) == {"RPYC_IKERNEL_TOKEN": "b0ard-t0ken-from-stdin"}


@pytest.mark.parametrize("args, stdin", [(["--token", "t0ken"], None), (["--token", "-"], "short\n")])
def test_install_refuses_a_token_the_board_server_refuses_with_the_server_s_words(tmp_path, args, stdin):
    from rpyc_ikernel.server import TokenError, check_token

    done = run_install("--prefix", str(tmp_path), *args, stdin=stdin)
    assert done.returncode == 1
    assert not (tmp_path / "share" / "jupyter" / "kernels" / "rpyc").exists()
    token = args[1] if args[1] != "-" else stdin.strip()
    with pytest.raises(TokenError) as server_says:
        check_token(token, "x")
    rule = str(server_says.value).split(" has ", 1)[1]  # "5 characters; use at least 16 (...)"
    assert done.stderr.strip().endswith(rule)
    assert done.stderr.strip().count("\n") == 0


def test_the_board_server_refuses_the_same_short_token(tmp_path):
    """The server's own check is the one install uses: a 5-character token on stdin stops it."""
    done = subprocess.run(
        [*SERVER, "--port", "0", "--token", "-"], input="t0ken\n", capture_output=True, text=True, timeout=60
    )
    assert done.returncode != 0
    assert "5 characters; use at least 16" in done.stdout + done.stderr


# ------------------------------------------------------------------------- 9: Ctrl-C in the board terminal


def start_terminal_board(tmp_path: Path) -> tuple[subprocess.Popen, int, Path]:
    """Our server as started in a terminal: SIGINT at its default (a CI shell may ignore it for us)."""
    from helpers import free_port, wait_for_port

    port, log = free_port(), tmp_path / "board.log"
    process = subprocess.Popen(
        [*SERVER, "--port", str(port)],
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    wait_for_port(port)
    return process, port, log


def wait_for_line(log: Path, text: str, timeout: float = 30) -> None:
    """Until the server said text (two signals sent too close together may arrive as one)."""
    deadline = time.monotonic() + timeout
    while text not in log.read_text():
        assert time.monotonic() < deadline, f"the server did not say {text!r}: {log.read_text()[-500:]}"
        time.sleep(0.05)


def run_until_started(session: KernelSession, marker: Path) -> str:
    """Send a cell that marks that it runs, then sleeps; returns its msg_id once it runs."""
    code = f"open({str(marker)!r}, 'w').close()\nimport time\nfor i in range(600):\n    time.sleep(0.1)\n"
    msg_id = session.send("execute_request", {"code": code, "silent": False, "stop_on_error": True})
    deadline = time.monotonic() + 60
    while not marker.exists():
        assert time.monotonic() < deadline, "the cell did not start"
        time.sleep(0.05)
    time.sleep(0.3)  # well inside its loop
    return msg_id


def test_ctrl_c_in_the_server_terminal_interrupts_the_cell_says_so_and_again_stops(
    kernelspec_prefix, tmp_path
):
    process, port, log = start_terminal_board(tmp_path)
    session = KernelSession.start(board_port=port)
    try:
        assert session.run("1").result == {"text/plain": "1"}
        msg_id = run_until_started(session, tmp_path / "first")
        process.send_signal(signal.SIGINT)
        reply = session.wait_reply(msg_id, timeout=30)["content"]
        assert reply["ename"] == "KeyboardInterrupt"
        assert reply["evalue"] == "Ctrl-C in the board server's terminal"
        assert process.poll() is None  # the server goes on
        assert "interrupted the running cell; Ctrl-C again stops the server" in log.read_text()
        assert session.run("2").result == {"text/plain": "2"}  # and serves the next cell
        msg_id = run_until_started(session, tmp_path / "second")
        process.send_signal(signal.SIGINT)  # a new cell: interrupted, not stopped
        assert session.wait_reply(msg_id, timeout=30)["content"]["ename"] == "KeyboardInterrupt"
        assert process.poll() is None
        process.send_signal(signal.SIGINT)  # between cells: stops the server
        assert process.wait(30) == 0
        assert log.read_text().rstrip().endswith("rpyc_ikernel server: stopped")
    finally:
        session.stop()
        if process.poll() is None:
            process.kill()
            process.wait()


def test_ctrl_c_twice_during_one_cell_stops_the_server(kernelspec_prefix, tmp_path):
    process, port, log = start_terminal_board(tmp_path)
    session = KernelSession.start(board_port=port)
    try:
        code = (
            f"open({str(tmp_path / 'run')!r}, 'w').close()\nimport time\nfor i in range(50):\n"
            "    try:\n        time.sleep(0.1)\n    except KeyboardInterrupt:\n        print('caught')\n"
        )
        msg_id = session.send("execute_request", {"code": code, "silent": False})
        deadline = time.monotonic() + 60
        while not (tmp_path / "run").exists():
            assert time.monotonic() < deadline
            time.sleep(0.05)
        time.sleep(0.3)
        process.send_signal(signal.SIGINT)  # caught by the cell, which goes on
        wait_for_line(log, "interrupted the running cell; Ctrl-C again stops the server")
        assert process.poll() is None
        process.send_signal(signal.SIGINT)  # again, same cell: the server stops once the cell ends
        session.wait_reply(msg_id, timeout=90)
        assert process.wait(30) == 0
        text = log.read_text()
        assert "interrupted the running cell; Ctrl-C again stops the server" in text
        assert "the server stops when it ends" in text
    finally:
        session.stop()
        if process.poll() is None:
            process.kill()
            process.wait()


# ----------------------------------------------------------------------------- 10: make demo

REPO = Path(__file__).resolve().parent.parent


def test_the_demo_installs_what_it_needs_only():
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    demo = " ".join(project["optional-dependencies"]["demo"])
    assert "nbclient" in demo
    for heavy in ("playwright", "jupyterlab", "ruff", "pytest", "notebook"):
        assert heavy not in demo
    makefile = (REPO / "Makefile").read_text()
    recipe = makefile.split("\ndemo:", 1)[1].split("\n\n", 1)[0]
    assert "$(DEMO_PY)" in recipe and "$(PY)" not in recipe
    assert '-e ".[demo]"' in makefile


def test_the_demo_runs_twice_in_a_row_on_the_same_port_without_a_failed_handshake(
    kernelspec_prefix, tmp_path
):
    from helpers import free_port

    port = free_port()
    runs = []
    for run in range(2):
        output = tmp_path / f"run{run}" / "getting_started.ipynb"
        done = subprocess.run(
            [sys.executable, str(REPO / "scripts" / "demo.py"), "--port", str(port), "--output", str(output)],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
        log = output.with_name("demo-board.log").read_text()
        assert output.with_name("demo-board.log").stat().st_mode & 0o077 == 0  # it may hold the token
        runs.append((done.stdout + done.stderr, log))
    for said, log in runs:
        assert "handshake failed" not in said + log
        assert f"board server at 127.0.0.1:{port}, stopped now" in said  # the same port both times
        assert "Port" not in said  # no move to another port
        assert f"listening on 127.0.0.1:{port}" in log


# ------------------------------------------------------------------------- 11: console banner, process title


def test_the_banner_names_the_board(kernel, board):
    kernel.client.kernel_info()
    reply = kernel.client.get_shell_msg(timeout=30)
    while reply["msg_type"] != "kernel_info_reply":
        reply = kernel.client.get_shell_msg(timeout=30)
    banner = reply["content"]["banner"]
    assert "cells run on a board through rpyc" in banner
    assert f"Board: 127.0.0.1:{board.port}" in banner


@pytest.mark.parametrize("how", ["copied", "module"])
def test_the_server_process_shows_itself_and_its_options(tmp_path, how):
    import shutil

    if how == "copied":  # as on a board: python3 server.py
        shutil.copy(REPO / "rpyc_ikernel" / "server.py", tmp_path / "server.py")
        command = [sys.executable, str(tmp_path / "server.py"), "--host", "127.0.0.1"]
    else:
        command = SERVER
    server = start_board(command=command, cwd=tmp_path)
    try:
        pid = server.process.pid
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        assert "rpyc_ikernel board server: " in cmdline
        tail = cmdline.split("rpyc_ikernel board server: ", 1)[1]
        assert tail.split()[0].endswith("server.py")
        assert f"--host 127.0.0.1 --port {server.port}" in tail
        assert Path(f"/proc/{pid}/comm").read_text().strip() == "rpyc_ikernel"
        if shutil.which("pgrep"):
            found = subprocess.run(["pgrep", "-af", "rpyc_ikernel"], capture_output=True, text=True).stdout
            assert any(line.startswith(f"{pid} ") for line in found.splitlines()), found
    finally:
        server.stop()
