"""Fixtures: real board servers on 127.0.0.1, the kernelspec in a temporary prefix, real kernels."""

from __future__ import annotations

import os
import signal
import sys
import tempfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

# Board servers create a token file on first start and kernels on this machine read it: give the whole
# test run (and every process it starts) its own config dir, never the developer's.
_CONFIG_HOME = tempfile.mkdtemp(prefix="rpyc-ikernel-test-config-")
os.environ["XDG_CONFIG_HOME"] = _CONFIG_HOME
os.environ.pop("RPYC_IKERNEL_TOKEN", None)
# Kernels keep IPython's history in $IPYTHONDIR: one per test process, not the developer's (and kernels
# started through helpers.launch_kernel get one each: concurrent writers lock SQLite).
os.environ["IPYTHONDIR"] = tempfile.mkdtemp(prefix="rpyc-ikernel-test-ipython-")
os.environ.pop("RPYC_IKERNEL_TOKEN_FILE", None)

from helpers import (  # noqa: E402
    PLAIN_BOARD,
    PROCESS_LOGS,
    BoardServer,
    KernelSession,
    install_kernelspec,
    start_board,
)


@pytest.fixture(scope="session")
def kernelspec_prefix(tmp_path_factory) -> Path:
    """The rpyc kernelspec installed in a temporary prefix that Jupyter is told to search."""
    prefix = tmp_path_factory.mktemp("jupyter-prefix")
    install_kernelspec(prefix)
    return prefix


@pytest.fixture(scope="session")
def board() -> BoardServer:
    """Our board server (python -m rpyc_ikernel.server) on a free loopback port."""
    server = start_board()
    yield server
    server.stop()


@pytest.fixture()
def own_board() -> BoardServer:
    """A board server of this test alone, which it may stop (SIGSTOP), kill or restart."""
    server = start_board()
    yield server
    if server.process.poll() is None:
        server.process.send_signal(signal.SIGCONT)  # a stopped process would not see the SIGTERM
    server.stop()


@pytest.fixture()
def kernel(kernelspec_prefix, board) -> KernelSession:
    """A real rpyc kernel, started through jupyter_client, whose default board is `board`."""
    session = KernelSession.start(board_port=board.port)
    yield session
    session.stop()


@pytest.fixture(autouse=True)
def _no_stray_board_env(monkeypatch):
    # Tests choose their board explicitly; a developer's own settings must not leak in.
    for name in ("RPYC_IKERNEL_HOST", "RPYC_IKERNEL_PORT"):
        if name in os.environ:
            monkeypatch.delenv(name)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    item.first_process_log = len(PROCESS_LOGS)  # logs from here on belong to this test


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    # Fixtures can see whether their test failed (the browser tests then keep a picture of the page).
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"report_{report.when}", report)
    if report.failed:
        # The logs of the boards and kernels this test started, and of those still running (module
        # fixtures): what the kernel or the board said is often the only clue to a failure on a busy machine.
        first = getattr(item, "first_process_log", len(PROCESS_LOGS))
        for index, log in enumerate(PROCESS_LOGS):
            if index >= first or log.alive():
                report.sections.append((f"{log.label} ({log.path})", log.tail()))


@pytest.fixture(scope="module")
def ours(kernelspec_prefix, board):
    """A kernel on our board server (cells on its main thread, interrupted by a signal)."""
    session = KernelSession.start(board_port=board.port)
    yield session
    session.stop()


@pytest.fixture(scope="module")
def plain(kernelspec_prefix, tmp_path_factory):
    """A kernel on the README's plain rpyc SlaveService board (nothing of ours installed there)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    server = start_board(
        command=[sys.executable, str(PLAIN_BOARD)], cwd=tmp_path_factory.mktemp("plain"), env=env
    )
    session = KernelSession.start(board_port=server.port)
    yield session
    session.stop()
    server.stop()


# Parallel runs (make test: pytest -n N --dist loadfile): each file is one unit of work, so its module
# fixtures (board servers, kernels, Jupyter servers) start once on one worker; the test boards' file is
# split by board, each board's servers starting once on its worker. Units run longest first (measured
# here; a file missing from this list only runs later): the slowest unit decides the wall time.
SLOW_FIRST = [
    "test_reliability.py",  # 160 s serially, one test of 100 s
    "test_browser.py",
    "test_rpyc_versions.py",
    "test_links.py",
    "boards/test_boards.py",
    "test_handshake.py",
    "test_benchmarks.py",
    "test_security.py",
    "test_soak.py",
    "test_install.py",
    "test_interrupt.py",
    "test_server_guard.py",
    "test_server_options.py",
    "test_interactive.py",
    "test_transfer.py",
    "test_transfer_links.py",
    "test_liveimage.py",
    "test_adb.py",
]
TESTS = Path(__file__).parent


def work_unit(nodeid: str) -> str:
    """The unit of work of a test (by node id): its file, and its board for the test boards' files."""
    file, _, rest = nodeid.partition("::")
    if "/boards/" in file:
        if str(TESTS.parent / "scripts") not in sys.path:
            sys.path.insert(0, str(TESTS.parent / "scripts"))
        from boards import BOARDS, EXTRA_BOARDS  # scripts/boards.py

        for board in (*BOARDS, *EXTRA_BOARDS):
            if f"[{board.name}" in rest or f"-{board.name}" in rest:
                return f"{file}[{board.name}]"
    return file


def _rank(nodeid: str) -> int:
    file = nodeid.partition("::")[0]
    for rank, name in enumerate(SLOW_FIRST):
        if file.endswith("tests/" + name):
            return rank
    return len(SLOW_FIRST)


def pytest_collection_modifyitems(config, items):
    if os.environ.get("PYTEST_XDIST_WORKER"):
        items.sort(key=lambda item: _rank(item.nodeid))  # stable: a file keeps its own order


def pytest_configure(config):
    if config.pluginmanager.hasplugin("xdist") and config.getoption("dist", "no") == "loadfile":
        config.option.loadscopereorder = False  # keep SLOW_FIRST's order, not xdist's count of tests


@pytest.hookimpl(tryfirst=True)
def pytest_xdist_make_scheduler(config, log):
    """--dist loadfile, with the test boards' file split by board (see work_unit)."""
    if config.getoption("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class ByFileAndBoard(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return work_unit(nodeid)

    return ByFileAndBoard(config, log)


@pytest.fixture(scope="module")
def stock(kernelspec_prefix):
    """The stock IPython kernel (kernelspec python3 of this venv): the reference for behaviour."""
    session = KernelSession.start(kernel_name="python3")
    yield session
    session.stop()
