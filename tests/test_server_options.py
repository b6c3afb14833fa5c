"""The board server's safe defaults: where it listens, how it gets its token, what it refuses.

Each refusal is one line on stderr and exit status 2; real server processes on 127.0.0.1.
"""

from __future__ import annotations

import os
import secrets
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import REPO, BoardServer, KernelSession, free_port, start_board, wait_for_port

SERVER = [sys.executable, "-m", "rpyc_ikernel.server", "--host", "127.0.0.1"]


def refused(*args: str, env: dict | None = None, stdin: str = "") -> str:
    """Run the server with args; it must stop at once with status 2 and say why in one line."""
    result = subprocess.run(
        [*SERVER, "--port", "0", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=30,
        cwd=REPO,
        env=env,
    )
    assert result.returncode == 2, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_server_listens_on_this_machine_only_by_default():
    port = free_port()
    server = start_board(command=[sys.executable, "-m", "rpyc_ikernel.server"], port=port)
    try:
        line = next(line for line in server.output().splitlines() if "listening on" in line)
        assert f"listening on 127.0.0.1:{port}" in line
        assert "--host 0.0.0.0" in line  # says how to listen on the network
        with pytest.raises(ConnectionRefusedError):  # another loopback address: not the wildcard
            socket.create_connection(("127.0.0.2", port), timeout=5).close()
    finally:
        server.stop()


@pytest.mark.parametrize(("content", "mode"), [("", 0o666), (" \n\t\n", 0o644)], ids=["empty", "blank"])
def test_an_empty_token_file_gets_a_new_token_in_a_private_file(tmp_path, content, mode):
    path = tmp_path / "token"
    path.write_text(content)
    path.chmod(mode)
    server = start_board(command=[*SERVER, "--token-file", str(path)])
    server.stop()
    token = path.read_text().strip()
    assert len(token) >= 24 and token in server.output()
    assert "(mode 0600)" in server.output()
    assert mode_of(path) == 0o600


def test_a_token_file_others_can_read_is_refused(tmp_path):
    path = tmp_path / "token"
    token = secrets.token_urlsafe(24)
    path.write_text(token + "\n")
    path.chmod(0o644)
    line = refused("--token-file", str(path))
    assert f"{path} is readable by others (mode 0644)" in line
    assert f"chmod 600 {path}" in line and token not in line
    assert mode_of(path) == 0o644 and path.read_text().strip() == token  # the owner decides
    path.chmod(0o600)
    server = start_board(command=[*SERVER, "--token-file", str(path)])
    server.stop()
    assert "token stored in" in server.output() and token not in server.output()


def test_a_token_on_the_command_line_is_refused_and_stdin_keeps_it_out_of_ps(kernelspec_prefix, tmp_path):
    token = secrets.token_urlsafe(24)
    line = refused(f"--token={token}")  # a token may start with "-"
    assert "ps" in line and "--token -" in line and token not in line
    port = free_port()
    log = tmp_path / "server.log"
    process = subprocess.Popen(
        [*SERVER, "--port", str(port), "--token", "-"],
        stdin=subprocess.PIPE,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        cwd=REPO,
        text=True,
    )
    server = BoardServer(process, port, log)
    try:
        process.stdin.write(token + "\n")
        process.stdin.close()
        wait_for_port(port)
        assert token.encode() not in Path(f"/proc/{process.pid}/cmdline").read_bytes()
        session = KernelSession.start(
            board_port=port, env={"RPYC_IKERNEL_TOKEN": token, "XDG_CONFIG_HOME": str(tmp_path / "none")}
        )
        try:
            assert session.run("1 + 1").result == {"text/plain": "2"}
        finally:
            session.stop()
    finally:
        server.stop()
    assert token not in server.output()


@pytest.mark.parametrize("source", ["environment", "stdin", "file"])
def test_short_tokens_are_refused(tmp_path, source):
    short = "abc-123-xyz"  # 11 characters
    path = tmp_path / "token"
    path.write_text(short + "\n")
    path.chmod(0o600)
    if source == "environment":
        line = refused(env=dict(os.environ, RPYC_IKERNEL_TOKEN=short))
    elif source == "stdin":
        line = refused("--token", "-", stdin=short + "\n")
    else:
        line = refused("--token-file", str(path))
    assert "11 characters" in line and "at least 16" in line


def test_a_kernel_warns_once_when_its_token_file_is_readable_by_others(kernelspec_prefix, tmp_path):
    token = secrets.token_urlsafe(24)
    config = tmp_path / "config"
    path = config / "rpyc_ikernel" / "token"
    path.parent.mkdir(parents=True)
    path.write_text(token + "\n")
    path.chmod(0o644)
    server = start_board(command=SERVER, env=dict(os.environ, RPYC_IKERNEL_TOKEN=token))
    session = KernelSession.start(board_port=server.port, env={"XDG_CONFIG_HOME": str(config)})
    try:
        first = session.run("1 + 1")
        assert first.result == {"text/plain": "2"}
        warning = first.stream("stderr")
        assert f"token file {path} is readable by others (mode 0644)" in warning
        assert len(warning.strip().splitlines()) == 1
        again = session.run(f'# exec(self.connect_remote("127.0.0.1", port={server.port}))\n3')
        assert again.result == {"text/plain": "3"}
        assert "token file" not in again.stream("stderr")
    finally:
        session.stop()
        server.stop()


@pytest.mark.parametrize("port", ["70000", "-1", "18812.5", "abc", ""])
def test_a_bad_port_is_one_line(port):
    result = subprocess.run([*SERVER, "--port", port], capture_output=True, text=True, timeout=30, cwd=REPO)
    assert result.returncode == 2
    assert f"argument --port: {port!r} is not a port" in result.stderr.strip().splitlines()[-1]
