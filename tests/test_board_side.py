"""The board side stays light: standard library + rpyc, Python 3.7 syntax, runs as a lone file."""

from __future__ import annotations

import ast
import shutil
import sys
from pathlib import Path

import pytest
from helpers import KernelSession, start_board

PACKAGE = Path(__file__).resolve().parent.parent / "rpyc_ikernel"
BOARD_FILES = sorted(str(p.relative_to(PACKAGE)) for p in (PACKAGE / "agent").rglob("*.py")) + ["server.py"]


def _optional_imports(tree: ast.AST) -> set[int]:
    """ids of import nodes inside `try: ... except ImportError:`: used if there, never required."""
    optional = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Try) and any(
            isinstance(handler.type, ast.Name) and handler.type.id in ("ImportError", "ModuleNotFoundError")
            for handler in node.handlers
        ):
            optional.update(id(inner) for statement in node.body for inner in ast.walk(statement))
    return optional


def imported_modules(path: Path, top_level_only: bool = False) -> set[str]:
    """Top-level names of the modules a file requires (optional imports left out)."""
    tree = ast.parse(path.read_text())
    optional = _optional_imports(tree)
    names = set()
    for node in tree.body if top_level_only else ast.walk(tree):
        if id(node) in optional:
            continue
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("name", BOARD_FILES)
def test_board_files_import_only_stdlib_and_rpyc(name):
    allowed = set(sys.stdlib_module_names) | {"rpyc"}
    assert imported_modules(PACKAGE / name, top_level_only=True) <= allowed
    # inside functions, the agent may use matplotlib: only once the user's own code imported it
    assert imported_modules(PACKAGE / name) <= allowed | {"matplotlib"}


@pytest.mark.parametrize("name", BOARD_FILES)
def test_board_files_parse_as_python_3_7(name):
    ast.parse((PACKAGE / name).read_text(), feature_version=(3, 7))


def test_server_file_runs_alone_when_copied_to_a_board(tmp_path, kernelspec_prefix):
    shutil.copy(PACKAGE / "server.py", tmp_path / "server.py")
    server = start_board(command=[sys.executable, "server.py", "--host", "127.0.0.1"], cwd=tmp_path)
    session = KernelSession.start(board_port=server.port)
    try:
        cell = session.run(
            "import sys\nprint(sorted(m for m in sys.modules if m.startswith('rpyc_ikernel')))"
        )
        assert cell.stream() == "[]\n"
        assert "listening on 127.0.0.1:" in server.output()
    finally:
        session.stop()
        server.stop()


def test_server_and_agent_agree_on_the_executor_name():
    """server.py stands alone on a board, so it cannot import the agent's wire.py: the one name they
    share is written in both, and must not drift."""
    from rpyc_ikernel import server
    from rpyc_ikernel.agent import wire

    assert server.EXECUTOR_MODULE == wire.EXECUTOR_MODULE
