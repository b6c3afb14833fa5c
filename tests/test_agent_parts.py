"""The board session and the board's shell are composed of parts that own their state, not of mixins.

A mixin that reads `self.x` set only in the class it is mixed into hides who owns `x`; a part sets
what it reads. Checked with ast (the agent is not imported): in the agent's session, shell and
introspection files, every `self.name` a class reads is a method, a class attribute or an attribute
set by that class (or by a base class of ours).
"""

from __future__ import annotations

import ast
from pathlib import Path

AGENT = Path(__file__).resolve().parent.parent / "rpyc_ikernel" / "agent"
FILES = [
    "session.py",
    "completer.py",
    "display.py",
    "formatters.py",
    "inline.py",
    "oinspect.py",
    "names.py",
    "queries.py",
    "errors.py",
    "compiling.py",
    *sorted(str(p.relative_to(AGENT)) for p in (AGENT / "magics").glob("*.py")),
]
PLAIN_BASES = {"object", "Exception", "list"}  # bases whose attributes a class may use freely


def _classes() -> dict[str, tuple[str, ast.ClassDef]]:
    classes = {}
    for name in FILES:
        tree = ast.parse((AGENT / name).read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                classes[node.name] = (name, node)
    return classes


def _own_names(node: ast.ClassDef) -> set[str]:
    """What the class defines: methods, class attributes, and attributes its methods set on self."""
    names = set()
    for item in node.body:
        if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(item.name)
        elif isinstance(item, ast.Assign):
            names.update(t.id for t in item.targets if isinstance(t, ast.Name))
        elif isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
            names.add(item.target.id)
    for inner in ast.walk(node):
        if (
            isinstance(inner, ast.Attribute)
            and isinstance(inner.ctx, ast.Store)
            and isinstance(inner.value, ast.Name)
            and inner.value.id == "self"
        ):
            names.add(inner.attr)
    return names


def _read_names(node: ast.ClassDef) -> dict[str, int]:
    """self.NAME reads in the class's methods -> first line."""
    reads = {}
    for inner in ast.walk(node):
        if (
            isinstance(inner, ast.Attribute)
            and isinstance(inner.ctx, ast.Load)
            and isinstance(inner.value, ast.Name)
            and inner.value.id == "self"
        ):
            reads.setdefault(inner.attr, inner.lineno)
    return reads


def _available(name: str, classes, seen=()) -> set[str] | None:
    """Everything class `name` and its bases define; None when a base is not ours (unknowable)."""
    _, node = classes[name]
    names = _own_names(node)
    for base in node.bases:
        base_name = base.id if isinstance(base, ast.Name) else None
        if base_name in PLAIN_BASES:
            continue
        if base_name not in classes or base_name in seen:
            return None
        inherited = _available(base_name, classes, seen + (name,))
        if inherited is None:
            return None
        names |= inherited
    return names


def test_each_class_sets_the_state_it_reads():
    classes = _classes()
    assert {"Session", "Exchange", "Output", "Stdin", "BoardShell", "OSMagics"} <= set(classes)
    problems = []
    for name, (path, node) in sorted(classes.items()):
        available = _available(name, classes)
        if available is None:
            continue
        for attribute, line in sorted(_read_names(node).items()):
            if attribute not in available and not attribute.startswith("__"):
                problems.append(f"{path}:{line}: {name} reads self.{attribute}, which it does not set")
    assert not problems, "\n".join(problems)


def test_session_and_shell_are_not_mixins():
    classes = _classes()
    for name in ("Session", "BoardShell"):
        bases = [ast.unparse(base) for base in classes[name][1].bases]
        assert bases == ["object"], f"{name} derives from {bases}: compose it from parts instead"
