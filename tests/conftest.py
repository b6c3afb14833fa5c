"""Fixtures: real board servers on 127.0.0.1, the kernelspec in a temporary prefix, real kernels."""

from __future__ import annotations

import os
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
os.environ.pop("RPYC_IKERNEL_TOKEN_FILE", None)

from helpers import PLAIN_BOARD, BoardServer, KernelSession, install_kernelspec, start_board  # noqa: E402


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


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    # Fixtures can see whether their test failed (the browser tests then keep a picture of the page).
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"report_{report.when}", report)


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


@pytest.fixture(scope="module")
def stock(kernelspec_prefix):
    """The stock IPython kernel (kernelspec python3 of this venv): the reference for behaviour."""
    session = KernelSession.start(kernel_name="python3")
    yield session
    session.stop()
