"""Imports in rpyc_ikernel point one way: no module imports, directly or through others, one that imports it.

Every module of the package is parsed with ast (nothing is imported); every import statement counts,
also those inside functions (a lazy import is still an arrow: it only hides a circle until run time)
and those under `if TYPE_CHECKING:` (a type that needs a module above is a layering question too).
Relative imports are resolved; `from package import name` is an arrow to the submodule where `name`
is one, else to the package. The package a module lives in is not an arrow of its own (Python imports
it first, whatever the module says). A cycle is reported with its modules in import order.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent.parent / "rpyc_ikernel"
PACKAGE = PACKAGE_DIR.name

# Cycles tolerated while a change that breaks them is under way (none now). Each entry is one cycle as
# find_cycles() reports it (its modules, the first one the smallest name, in import order).
KNOWN_CYCLES: set[tuple[str, ...]] = set()


def module_files() -> dict[str, Path]:
    """Dotted module name -> file, for every .py file of the package."""
    modules = {}
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def _base(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    """The absolute module a `from ... import` names (relative levels resolved)."""
    if node.level == 0:
        return node.module or ""
    parts = module.split(".")
    if not is_package:
        parts.pop()  # a module's level 1 is its package; a package's is itself
    if node.level > 1:
        parts = parts[: len(parts) - (node.level - 1)]
    return ".".join(parts + ([node.module] if node.module else []))


def imports_of(module: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The package's modules that `module` imports anywhere in its file."""
    tree = ast.parse(path.read_text(), str(path))
    is_package = path.name == "__init__.py"
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _base(module, is_package, node)
            targets = []
            for alias in node.names:
                submodule = base + "." + alias.name
                targets.append(submodule if submodule in modules else base)
        else:
            continue
        for target in targets:
            # `import a.b.c` loads a.b.c: the deepest part of it that is one of our modules
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != module and not module.startswith(target + "."):
                found.add(target)
    return found


def import_graph() -> dict[str, set[str]]:
    modules = module_files()
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def find_cycles(graph: dict[str, set[str]]) -> set[tuple[str, ...]]:
    """Every elementary cycle, once each, as a tuple that starts at its smallest module name."""
    cycles = set()
    for start in sorted(graph):
        # depth-first search for paths back to start through modules larger than start only
        stack = [(start, [start])]
        while stack:
            node, path = stack.pop()
            for target in sorted(graph.get(node, ())):
                if target == start:
                    cycles.add(tuple(path))
                elif target > start and target not in path:
                    stack.append((target, path + [target]))
    return cycles


def _describe(cycle: tuple[str, ...]) -> str:
    return " -> ".join(cycle + cycle[:1])


def test_the_graph_sees_relative_function_level_and_submodule_imports():
    graph = import_graph()
    assert "rpyc_ikernel.agent.wire" in graph["rpyc_ikernel.agent.session"]  # from . import wire
    assert "rpyc_ikernel.agent.iostream" in graph["rpyc_ikernel.agent.session"]  # from .iostream import
    assert "rpyc_ikernel.agent.magics" in graph["rpyc_ikernel.agent.session"]  # inside get_ipython()
    assert "rpyc_ikernel.agent.magics.script" in graph["rpyc_ikernel.agent.magics"]
    assert "rpyc_ikernel.agent.wire" in graph["rpyc_ikernel.kernel"]  # absolute, from a package


def test_find_cycles_finds_a_circle_hidden_behind_a_third_module():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set(), "e": {"e2"}, "e2": {"e"}}
    assert find_cycles(graph) == {("a", "b", "c"), ("e", "e2")}


def test_no_import_cycles():
    cycles = find_cycles(import_graph())
    new = sorted(cycles - KNOWN_CYCLES)
    assert not new, "import cycles (a lower module must not import a higher one):\n" + "\n".join(
        _describe(cycle) for cycle in new
    )


def test_known_cycles_are_still_there():
    """An entry of KNOWN_CYCLES that no longer exists goes, so the list only shrinks."""
    gone = sorted(KNOWN_CYCLES - find_cycles(import_graph()))
    assert not gone, "broken cycles still listed in KNOWN_CYCLES: " + ", ".join(_describe(c) for c in gone)
