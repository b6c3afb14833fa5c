"""The board server stays light: ssl loads only when something uses it, and then works as usual."""

from __future__ import annotations

import pytest
from helpers import KernelSession, start_board


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
