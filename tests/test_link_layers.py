"""The laptop side's layers, read from the source: imports point down, and the kernel uses a board only
through BoardLike (so a group of boards can stand where one board does).

Imports are found with ast anywhere in a module: inside functions and `if TYPE_CHECKING:` too, since a
circle hidden in a function is still a circle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "rpyc_ikernel"
# the modules of the board link; none may sit in an import circle
LINK_MODULES = ("board", "sidelink", "connector", "adb")


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, modules: set[str]) -> set[str]:
    """The package's modules `path` imports, wherever in the file the import statement is."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package
            for _ in range(node.level - 1):
                base = base.rpartition(".")[0]
            if node.level:
                base = f"{base}.{node.module}" if node.module else base
            else:
                base = node.module or ""
            submodules = {f"{base}.{alias.name}" for alias in node.names} & modules  # `from . import board`
            found.update(submodules)
            if len(submodules) < len(node.names):  # names defined in `base` itself
                found.add(base)
    return {target for target in found if target in modules and target != name}


def _graph() -> dict[str, set[str]]:
    paths = [path for path in PACKAGE.rglob("*.py")]
    modules = {_module_name(path) for path in paths}
    return {_module_name(path): _imports(path, modules) for path in paths}


def _circle_through(graph: dict[str, set[str]], start: str) -> list[str] | None:
    """A chain of imports from `start` back to itself, if there is one."""
    stack = [(start, [start])]
    seen = set()
    while stack:
        module, chain = stack.pop()
        for target in sorted(graph.get(module, ())):
            if target == start:
                return [*chain, start]
            if target not in seen:
                seen.add(target)
                stack.append((target, [*chain, target]))
    return None


def test_the_import_finder_sees_imports_inside_functions() -> None:
    """The check below could not fail if function-level imports were missed: kernel.py has one."""
    graph = _graph()
    assert "rpyc_ikernel.discovery" in graph["rpyc_ikernel.kernel"]  # imported in kernel.boards() only
    assert "rpyc_ikernel.connector" in graph["rpyc_ikernel.board"]


@pytest.mark.parametrize("module", LINK_MODULES)
def test_no_module_of_the_board_link_is_in_an_import_circle(module: str) -> None:
    circle = _circle_through(_graph(), f"rpyc_ikernel.{module}")
    assert circle is None, "import circle: " + " -> ".join(circle)


def test_side_links_and_the_connector_do_not_import_the_board() -> None:
    graph = _graph()
    for module in ("sidelink", "connector"):
        assert "rpyc_ikernel.board" not in graph[f"rpyc_ikernel.{module}"], module


def _board_like_members() -> set[str]:
    from rpyc_ikernel.board import BoardLike

    tree = ast.parse((PACKAGE / "board.py").read_text(encoding="utf-8"))
    found = next(node for node in tree.body if isinstance(node, ast.ClassDef) and node.name == "BoardLike")
    members = set()
    for node in found.body:
        if isinstance(node, ast.FunctionDef):
            members.add(node.name)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            members.add(node.target.id)
    assert members and all(hasattr(BoardLike, name) or name in BoardLike.__annotations__ for name in members)
    return members


def test_the_kernel_uses_a_board_only_through_board_like() -> None:
    """Every `self.board.X` in kernel.py is a BoardLike member, and Board has each of them."""
    from rpyc_ikernel.board import Board

    members = _board_like_members()
    tree = ast.parse((PACKAGE / "kernel.py").read_text(encoding="utf-8"))
    used = {
        node.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Attribute)
        and node.value.attr == "board"
        and isinstance(node.value.value, ast.Name)
        and node.value.value.id == "self"
    }
    assert used, "kernel.py no longer names self.board: this check finds nothing"
    assert used <= members, f"kernel.py uses {sorted(used - members)} of a board beyond BoardLike"
    instance_attributes = {"trusted", "running_cell_id", "warm_side_link"}  # set in Board.__init__
    assert all(hasattr(Board, name) or name in instance_attributes for name in members)


def test_rpyc_private_attributes_are_touched_in_one_adapter_only() -> None:
    """rpyc's _channel and _config (private, changed between its versions) are used by
    bootstrap.BoardConnection alone on the laptop side; the board side (server.py, agent/) is apart."""
    touching = set()
    for path in PACKAGE.glob("*.py"):
        if path.name == "server.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Attribute) and node.attr in ("_channel", "_config"):
                touching.add(path.name)
    assert touching == {"bootstrap.py"}
