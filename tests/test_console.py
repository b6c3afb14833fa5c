"""`jupyter console --kernel rpyc` in a real terminal (a pty): board output, multi-line input, exit.

The console draws with prompt_toolkit, so its output is full of colour and cursor escapes; the
:class:`Terminal` below strips them and matches on the text a person would read.
"""

from __future__ import annotations

import os
import re
import sys
import time
from pathlib import Path

import pexpect
import pytest

JUPYTER = str(Path(sys.executable).with_name("jupyter"))
ESCAPES = re.compile(r"\x1b(?:\[[0-9;?]*[ -/]*[@-~]|\][^\x07]*\x07|[@-Z\\-_])|\r")


class Terminal:
    """A program on a pty; `expect` waits for a regex in its escape-free output, past earlier matches."""

    def __init__(self, child: pexpect.spawn) -> None:
        self.child = child
        self.raw = ""
        self.position = 0

    @property
    def screen(self) -> str:
        return ESCAPES.sub("", self.raw)

    def expect(self, pattern: str, timeout: float = 30) -> re.Match:
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            match = regex.search(self.screen, self.position)
            if match:
                self.position = match.end()
                return match
            if time.monotonic() > deadline:
                raise AssertionError(f"{pattern!r} not shown; the console printed:\n{self.screen}")
            try:
                self.raw += self.child.read_nonblocking(4096, timeout=0.2)
            except pexpect.TIMEOUT:
                pass
            except pexpect.EOF:
                if not regex.search(self.screen, self.position):
                    raise AssertionError(f"console ended before {pattern!r}:\n{self.screen}") from None

    def type_line(self, text: str) -> None:
        self.child.sendline(text)


@pytest.fixture()
def console(kernelspec_prefix, board, tmp_path) -> Terminal:
    env = dict(
        os.environ,
        RPYC_IKERNEL_HOST="127.0.0.1",
        RPYC_IKERNEL_PORT=str(board.port),
        JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"),
        TERM="xterm",
    )
    child = pexpect.spawn(
        JUPYTER,
        ["console", "--kernel", "rpyc"],
        env=env,
        encoding="utf-8",
        dimensions=(40, 120),
        cwd=str(tmp_path),
    )
    terminal = Terminal(child)
    terminal.expect(r"In \[1\]: ", timeout=60)
    yield terminal
    if child.isalive():
        child.terminate(force=True)
    child.close()


def test_console_runs_cells_on_the_board(console, board):
    assert "cells run on a board through rpyc" in console.screen  # the kernel's banner
    console.type_line("import os; print('board pid', os.getpid())")
    pid = console.expect(r"board pid (\d+)").group(1)
    assert int(pid) == board.process.pid
    console.expect(r"In \[2\]: ")
    console.type_line("sum(range(10))")
    console.expect(r"Out\[2\]: 45")


def test_console_waits_for_the_rest_of_a_multi_line_statement(console):
    console.type_line("for i in range(3):")
    console.expect(r"\.\.\.: ")  # the kernel's is_complete said "incomplete": a continuation prompt
    console.type_line("print('line', i * 10)")
    console.expect(r"\.\.\.: ")
    assert "line 0" not in console.screen  # nothing ran yet
    console.type_line("")
    console.expect(r"line 0\s+line 10\s+line 20\s+")
    console.expect(r"In \[2\]: ")


def test_exit_ends_the_console(console):
    console.type_line("exit")
    console.child.expect(pexpect.EOF, timeout=30)
    console.child.close()
    assert console.child.exitstatus == 0
