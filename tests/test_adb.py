"""Boards on USB through adb, the default board, presets and status.

adb is tests/fake_adb/adb: a real executable speaking adb's command line whose "device" is this
machine (a forward is a loopback TCP forwarder process), so no device is needed.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
from helpers import KernelSession, free_port, start_board

from rpyc_ikernel.adb import AdbError, adb_board
from rpyc_ikernel.errors import BoardUnreachable

FAKE_ADB_DIR = Path(__file__).with_name("fake_adb")


@dataclass
class FakeAdb:
    """The fake adb's environment and what it has done."""

    state: Path
    env: dict

    def adb(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(FAKE_ADB_DIR / "adb"), *args], capture_output=True, text=True, env={**os.environ, **self.env}
        )

    def forwards(self) -> list[str]:
        return self.adb("forward", "--list").stdout.splitlines()

    def connections(self) -> int:
        log = self.state / "connections.log"
        return len(log.read_text().splitlines()) if log.exists() else 0

    def wait_until_no_forwards(self, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while self.forwards() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert self.forwards() == []


@pytest.fixture()
def fake_adb(tmp_path, monkeypatch) -> FakeAdb:
    """The fake adb first on PATH, for this process and for kernels started with fake.env."""
    env = {
        "PATH": f"{FAKE_ADB_DIR}{os.pathsep}{os.environ['PATH']}",
        "FAKE_ADB_STATE": str(tmp_path / "adb-state"),
        "FAKE_ADB_PYTHON": sys.executable,
        "FAKE_ADB_DEVICES": "FAKE0001",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    fake = FakeAdb(tmp_path / "adb-state", env)
    yield fake
    for path in fake.state.glob("forward-*.json"):  # forwarders a failed test left behind
        os.kill(json.loads(path.read_text())["pid"], 15)


def port_is_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


# --------------------------------------------------------------------------- AdbForward in this process


def test_an_adb_board_is_reached_through_a_forward_that_closes_with_it(fake_adb, board):
    adb = adb_board(uuid.uuid4().hex, port=board.port)
    link = adb.connect()
    assert link.info["pid"] == board.process.pid
    local = adb.tunnel.local_port
    assert fake_adb.forwards() == [f"FAKE0001 tcp:{local} tcp:{board.port}"]
    assert fake_adb.connections() == 1
    assert str(adb.address) == f"adb device FAKE0001 port {board.port}"
    assert adb.tunnel.describe() == f"adb forward 127.0.0.1:{local} -> device FAKE0001 tcp:{board.port}"
    adb.close()
    assert fake_adb.forwards() == []
    assert adb.connect().info["pid"] == board.process.pid  # a reconnect makes a new forward
    assert len(fake_adb.forwards()) == 1
    adb.close()
    fake_adb.wait_until_no_forwards()
    assert not port_is_open(local)


@pytest.mark.parametrize(
    "devices, serial, message",
    [
        ("", None, "no adb device found: plug the board in over USB, enable USB debugging"),
        (
            "A1,B2",
            None,
            'several adb devices are connected (A1, B2); pick one with # exec(self.connect_adb(serial="A1"))',
        ),
        ("A1", "C3", "adb device 'C3' is not connected (adb sees: A1); check the cable"),
        ("A1:unauthorized", None, "adb device A1 is unauthorized: accept the 'Allow USB debugging' prompt"),
        ("A1:offline,B2", "A1", "adb device A1 is offline: unplug and replug the board"),
    ],
)
def test_device_problems_are_one_clear_line(fake_adb, monkeypatch, devices, serial, message):
    monkeypatch.setenv("FAKE_ADB_DEVICES", devices)
    with pytest.raises(AdbError) as raised:
        adb_board(uuid.uuid4().hex, serial=serial, port=free_port()).connect()
    assert str(raised.value).startswith(message)
    assert "\n" not in str(raised.value)
    assert fake_adb.forwards() == []


def test_the_only_usable_device_is_picked_and_serial_selects_one(fake_adb, monkeypatch, board):
    monkeypatch.setenv("FAKE_ADB_DEVICES", "OLD:offline,B2,C3")
    adb = adb_board(uuid.uuid4().hex, serial="C3", port=board.port)
    adb.connect()
    assert fake_adb.forwards()[0].startswith("C3 tcp:")
    adb.close()
    monkeypatch.setenv("FAKE_ADB_DEVICES", "OLD:offline,B2")
    adb = adb_board(uuid.uuid4().hex, port=board.port)
    adb.connect()
    assert str(adb.address) == f"adb device B2 port {board.port}"
    adb.close()


def test_a_missing_adb_binary_is_one_clear_line(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(
        AdbError, match=r"^cannot run 'adb': not found on PATH; install Android platform-tools"
    ):
        adb_board(uuid.uuid4().hex).connect()


def test_no_server_on_the_device_port_says_so_and_removes_the_forward(fake_adb):
    adb = adb_board(uuid.uuid4().hex, port=free_port(), timeout=2)
    started = time.monotonic()
    with pytest.raises(BoardUnreachable) as raised:
        adb.connect()
    assert time.monotonic() - started < 5
    assert str(raised.value).startswith(f"nothing on adb device FAKE0001 port {adb.address.port} answered")
    assert "start the board server on the board" in str(raised.value)
    adb.close()
    assert fake_adb.forwards() == []


# --------------------------------------------------------------------------- through a real kernel


def test_connect_adb_in_a_cell_then_leaving_or_shutting_down_removes_the_forward(
    kernelspec_prefix, board, fake_adb
):
    other = start_board()
    session = KernelSession.start(board_port=other.port, env=fake_adb.env)
    try:
        cell = session.run(f"# exec(self.connect_adb(port={board.port}))\nimport os\nos.getpid()")
        assert cell.status == "ok", cell.error
        assert cell.result == {"text/plain": str(board.process.pid)}
        (forward,) = fake_adb.forwards()
        local = int(forward.split()[1][4:])
        assert cell.stream().startswith(
            f"Connected to board adb device FAKE0001 port {board.port} (adb forward from 127.0.0.1:{local}):"
        )
        assert fake_adb.connections() >= 1
        cell = session.run("# exec(self.connect_remote())\nimport os\nos.getpid()")
        assert cell.result == {"text/plain": str(other.process.pid)}  # the kernel's default board
        fake_adb.wait_until_no_forwards()
        assert session.run(f"# exec(self.connect_adb(port={board.port}))").status == "ok"
        assert len(fake_adb.forwards()) == 1
    finally:
        session.stop()
        other.stop()
    fake_adb.wait_until_no_forwards()


def test_adb_errors_in_a_cell_are_one_line_and_the_kernel_goes_on(kernelspec_prefix, board, fake_adb):
    session = KernelSession.start(board_port=board.port, env=fake_adb.env)
    try:
        for setting, expected in [
            ("FAKE_ADB_DEVICES=''", "no adb device found: plug the board in over USB"),
            ("PATH='/nonexistent'", "cannot run 'adb': not found on PATH; install Android platform-tools"),
        ]:
            cell = session.run(
                f"# exec(__import__('os').environ.update({setting}))\n"
                "# exec(self.connect_adb())\n"
                "print('not reached')"
            )
            assert cell.status == "error"
            assert cell.error["ename"] == "AdbError"
            assert cell.error["evalue"].startswith(expected) and "\n" not in cell.error["evalue"]
            assert cell.stream() == ""
        assert session.run("1 + 1").result == {"text/plain": "2"}  # still on the default board
    finally:
        session.stop()


# --------------------------------------------------------------------------- the default board and presets


def test_connect_remote_without_host_goes_back_to_the_default_board(kernel, board):
    other = start_board()
    try:
        assert kernel.run(f'# exec(self.connect_remote("127.0.0.1", port={other.port}))').status == "ok"
        assert kernel.run("import os\nos.getpid()").result == {"text/plain": str(other.process.pid)}
        cell = kernel.run("# exec(self.connect_remote())\nimport os\nos.getpid()")
        assert cell.stream().startswith(f"Connected to board 127.0.0.1:{board.port}:")
        assert cell.result == {"text/plain": str(board.process.pid)}
    finally:
        other.stop()


def test_without_settings_the_default_board_is_loopback_18812(kernelspec_prefix):
    session = KernelSession.start()
    try:
        cell = session.run("# exec(print(self.board.address))")
        assert cell.stream() == "127.0.0.1:18812\n"
    finally:
        session.stop()


def test_an_adb_preset_connects_through_adb_by_default(tmp_path, monkeypatch, board, fake_adb):
    prefix = tmp_path / "prefix"
    installed = subprocess.run(
        [
            sys.executable,
            "-m",
            "rpyc_ikernel.install",
            "--prefix",
            str(prefix),
            "--name",
            "rpyc-usb",
            "--display-name",
            "Board (usb)",
            "--adb",
            "--port",
            str(board.port),
        ],
        capture_output=True,
        text=True,
    )
    assert installed.returncode == 0, installed.stderr
    jupyter_path = [str(prefix / "share" / "jupyter"), os.environ.get("JUPYTER_PATH", "")]
    monkeypatch.setenv("JUPYTER_PATH", os.pathsep.join(filter(None, jupyter_path)))
    session = KernelSession.start(env=fake_adb.env, kernel_name="rpyc-usb")
    try:
        cell = session.run("import os\nos.getpid()")
        assert cell.result == {"text/plain": str(board.process.pid)}
        assert [line.split()[0] for line in fake_adb.forwards()] == ["FAKE0001"]
        cell = session.run("# exec(self.status())")
        assert f"board     adb device FAKE0001 port {board.port}\n" in cell.stream()
        assert "tunnel    adb forward 127.0.0.1:" in cell.stream()
        assert session.run("# exec(self.connect_remote())").status == "ok"  # the preset's board again
        assert len(fake_adb.forwards()) == 1
    finally:
        session.stop()
    fake_adb.wait_until_no_forwards()


# --------------------------------------------------------------------------- status


def test_status_shows_address_python_platform_uptime_latency_and_security(kernel, board):
    cell = kernel.run("# exec(self.status())")
    assert cell.status == "ok", cell.error
    rows = dict(line.split(None, 1) for line in cell.stream().splitlines())
    assert rows["board"] == f"127.0.0.1:{board.port}"
    assert rows["state"] == "connected"
    assert rows["python"].startswith(f"CPython {sys.version.split()[0]}, pid {board.process.pid}")
    assert rows["platform"].startswith("Linux-") and ", host " in rows["platform"]
    assert re.fullmatch(r"board (\d+ d )?\d+:\d\d:\d\d, server \d+:\d\d:\d\d", rows["uptime"])
    assert "available of" in rows["memory"]
    latency = float(rows["latency"].split()[0])
    assert 0 < latency < 100
    assert rows["auth"] == "token (challenge-response)"  # our server's default
    assert rows["tls"].startswith("off")


def test_status_shows_an_open_board_and_tls(kernelspec_prefix, tmp_path):
    server = start_board(
        command=[sys.executable, "-m", "rpyc_ikernel.server", "--host", "127.0.0.1", "--no-auth"]
    )
    session = KernelSession.start(board_port=server.port, env={"XDG_CONFIG_HOME": str(tmp_path)})
    try:
        rows = dict(
            line.split(None, 1) for line in session.run("# exec(self.status())").stream().splitlines()
        )
        assert rows["auth"].startswith("none: anyone who can reach")
    finally:
        session.stop()
        server.stop()


def test_status_of_an_unreachable_board_says_why_without_failing(kernelspec_prefix):
    port = free_port()
    session = KernelSession.start(board_port=port)
    try:
        cell = session.run("# exec(self.status())")
        assert cell.status == "ok"
        assert (
            f"state     not connected: cannot reach board 127.0.0.1:{port}: connection refused"
            in cell.stream()
        )
    finally:
        session.stop()
