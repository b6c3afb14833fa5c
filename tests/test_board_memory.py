"""The board server stays light: ssl loads only when something uses it, and then works as usual;
the agent adds little memory and loads only its core at connect."""

from __future__ import annotations

import ast
import shutil
import sys
import time
from pathlib import Path

import pytest
from helpers import REPO, KernelSession, start_board

SERVER_FILE = REPO / "rpyc_ikernel" / "server.py"


@pytest.fixture()
def fresh_kernel(kernelspec_prefix):
    """A kernel on a board server of its own, so no earlier test has loaded anything into it."""
    board = start_board()
    session = KernelSession.start(board_port=board.port)
    yield session
    session.stop()
    board.stop()


def test_ssl_loads_only_when_a_cell_uses_it(fresh_kernel):
    cell = fresh_kernel.run("import sys\ntype(sys.modules['ssl']).__name__")
    assert cell.result == {"text/plain": "'DeferredModule'"}

    cell = fresh_kernel.run(
        "import ssl\n"
        "from ssl import SSLContext\n"
        "import urllib.request\n"
        "context = ssl.create_default_context()\n"
        "print(isinstance(context, SSLContext), ssl.OPENSSL_VERSION.split()[0])\n"
        "type(sys.modules['ssl']).__name__"
    )
    assert cell.status == "ok", cell.error
    assert cell.stream() == "True OpenSSL\n"
    assert cell.result == {"text/plain": "'module'"}


AGENT_MEMORY_LIMIT = 3 * 2**20  # bytes; the agent and the connection add ~1 MiB today (make bench)
CORE = [
    "",
    ".boot",
    ".compiling",
    ".errors",
    ".formatters",
    ".history",
    ".iostream",
    ".session",
    ".shim",
    ".wire",
]  # loaded at connect
# stdlib modules that cost a board megabytes, which the agent imports only in what needs them
HEAVY = ("hashlib", "subprocess", "tempfile", "uuid", "platform", "pprint", "rlcompleter", "ctypes")
LOADED = (
    "import sys\n"
    "name = '_rpyc_ikernel_agent'\n"
    "agent = sorted(m[len(name) :] for m in sys.modules if m.startswith(name))\n"
    f"heavy = sorted(m for m in sys.modules if m.partition('.')[0] in {HEAVY!r})\n"
    "agent, heavy"
)


def resident(pid: int) -> int:
    """VmRSS of a process in bytes (Linux)."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def test_the_agent_adds_little_to_a_fresh_board_server(kernelspec_prefix):
    board = start_board()
    try:
        time.sleep(0.5)  # let the server finish starting
        before = resident(board.process.pid)
        session = KernelSession.start(board_port=board.port)
        try:
            cell = session.run(LOADED)
            assert cell.status == "ok", cell.error
            time.sleep(0.5)
            added = resident(board.process.pid) - before
        finally:
            session.stop()
    finally:
        board.stop()
    agent, heavy = ast.literal_eval(cell.result["text/plain"])
    assert agent == CORE  # the rest of the agent loads on first use
    assert heavy == []
    assert added <= AGENT_MEMORY_LIMIT, f"the agent added {added / 2**20:.1f} MiB to the board server"


STARTED = (
    "import os, sys\n"
    "main = sys.modules['__main__']\n"
    "('_LEAN_CODE' in vars(main), getattr(main.__spec__, 'name', None), sys.argv[0],"
    " sys.warnoptions, 'argparse' in sys.modules,"
    " [n for n in ('f', 'c') if n in vars(main)]"
    " + [p for p in (os.path.realpath('/proc/self/fd/' + d) for d in os.listdir('/proc/self/fd'))"
    " if p.endswith('(deleted)')])"
)


@pytest.mark.parametrize("how", ["script", "module"])
def test_the_server_restarts_itself_into_its_compiled_code(kernelspec_prefix, tmp_path, how):
    """Run as a program, the server re-executes once into LEAN_START, which runs its marshalled code
    (server.py, "a lean start"): same interpreter options and arguments, how it was started kept,
    argparse gone after parsing, and neither LEAN_START's names nor its code file left behind."""
    if how == "script":  # as copied alone to a board
        shutil.copy(SERVER_FILE, tmp_path / "server.py")
        command = [sys.executable, "-W", "ignore::ResourceWarning", "server.py", "--host", "127.0.0.1"]
        board = start_board(command=command, cwd=tmp_path)
    else:
        command = [sys.executable, "-W", "ignore::ResourceWarning", "-m", "rpyc_ikernel.server"]
        board = start_board(command=[*command, "--host", "127.0.0.1"])
    try:
        session = KernelSession.start(board_port=board.port)
        try:
            cell = session.run(STARTED)
        finally:
            session.stop()
    finally:
        board.stop()
    assert cell.status == "ok", cell.error
    loaded, module, program, warnoptions, argparse_loaded, leaked = ast.literal_eval(
        cell.result["text/plain"]
    )
    assert loaded is True
    assert module == (None if how == "script" else "rpyc_ikernel.server")
    expected = tmp_path / "server.py" if how == "script" else SERVER_FILE
    assert Path(program).resolve() == expected.resolve()
    assert warnoptions == ["ignore::ResourceWarning"]
    assert argparse_loaded is False
    assert leaked == []
    assert "listening on 127.0.0.1:" in board.output()
