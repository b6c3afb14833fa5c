"""Values users type are checked where they are typed: one clear line each, never a hang or a busy thread.

Real kernels against the session's board server on 127.0.0.1.
"""

from __future__ import annotations

import subprocess
import sys

from helpers import KernelSession


def one_line_error(kernel, command: str) -> str:
    """Run a local command that must fail; its one-line message (the cell after it is not run)."""
    cell = kernel.run(f"# exec({command})\nprint('not reached')", timeout=30)
    assert cell.status == "error", command
    assert cell.error["ename"] == "ValueError", cell.error
    assert "\n" not in cell.error["evalue"]
    assert cell.stream() == ""
    return cell.error["evalue"]


def test_connect_remote_checks_port_host_and_timeout(kernel, board):
    for port in ("0", "70000", "-1", "18812.5", '"abc"', "True", "None or 3.0"):
        message = one_line_error(kernel, f'self.connect_remote("127.0.0.1", port={port})')
        assert "is not a port: give a number from 1 to 65535" in message, message
    for host in (r'"board\x00evil"', '""', '" "', '"two words"', "5"):
        message = one_line_error(kernel, f"self.connect_remote({host}, port={board.port})")
        assert message.startswith("host") and "give the board's name or address" in message, message
    for timeout in ('float("nan")', 'float("inf")', "-1", '"x"'):
        message = one_line_error(
            kernel, f'self.connect_remote("127.0.0.1", port={board.port}, timeout={timeout})'
        )
        assert "is not a number of seconds" in message, message
    # the board in use stays selected, and a good call still works
    assert kernel.run("1 + 1").result == {"text/plain": "2"}
    cell = kernel.run(f'# exec(self.connect_remote("127.0.0.1", port="{board.port}", timeout=5))\n3')
    assert cell.result == {"text/plain": "3"}


def test_a_bad_port_in_the_environment_is_one_line_in_each_cell(kernelspec_prefix, board):
    for value in ("abc", "70000", "18812.5"):
        session = KernelSession.start(env={"RPYC_IKERNEL_HOST": "127.0.0.1", "RPYC_IKERNEL_PORT": value})
        try:
            cell = session.run("1 + 1", timeout=30)  # the kernel started, and says what is wrong
            assert cell.reply["ename"] == "BoardError"
            assert cell.reply["evalue"].startswith(f"RPYC_IKERNEL_PORT={value!r} is not a port")
            assert "\n" not in cell.reply["evalue"]
            fixed = session.run(f'# exec(self.connect_remote("127.0.0.1", port={board.port}))\n2')
            assert fixed.result == {"text/plain": "2"}
        finally:
            session.stop()


def test_display_checks_interval_and_name_and_starts_no_thread(kernel):
    for interval in ('float("nan")', 'float("inf")', "-1", '"x"', "True", "10**400"):
        message = one_line_error(kernel, f'self.display("img_buffer", interval={interval})')
        assert message.startswith(f"interval={eval(interval)!r} is not a number of seconds"), message
    for name in ('"class"', '"1abc"', '"a b"', "5", '""'):
        message = one_line_error(kernel, f"self.display({name})")
        assert message.startswith("display() takes the name of a board variable"), message
    names = kernel.run("# exec(print(self.live_images.names, self.live_images._thread))").stream()
    assert names == "[] None\n"


def test_install_checks_port_and_host(tmp_path):
    for args, expected in (
        (["--port", "70000"], "argument --port: '70000' is not a port"),
        (["--port", "0"], "argument --port: '0' is not a port"),
        (["--host", ""], "argument --host: the host name is empty"),
    ):
        result = subprocess.run(
            [sys.executable, "-m", "rpyc_ikernel.install", "--prefix", str(tmp_path), *args],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 2
        assert expected in result.stderr.strip().splitlines()[-1]
        assert not (tmp_path / "share").exists()
