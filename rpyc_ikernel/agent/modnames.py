"""Module names and a module's names, found without importing anything (an import may start a motor).

Top-level modules come from listing the directories on sys.path (as pkgutil.iter_modules does, but
without its finders' imports), cached, and listed again when sys.path or one of its directories
changes. A module's names come from sys.modules when it is loaded, else from its source read with ast.
"""

import ast
import os
import sys

SUFFIXES = (".py", ".pyc", ".so", ".pyd")
MAX_SOURCE = 2 * 1024 * 1024  # a module larger than this is not parsed for its names

_cache = {"key": None, "names": ()}
_source_names = {}  # (path, mtime) -> names


def _module_name(entry, directory):
    """The module an entry of a directory stands for, or None ('x.cpython-311-arm.so' -> 'x')."""
    if entry.startswith(".") or entry == "__pycache__":
        return None
    head, dot, tail = entry.partition(".")
    if not dot:
        full = os.path.join(directory, entry)
        if head.isidentifier() and os.path.isdir(full):
            return head
        return None
    if head.isidentifier() and any(entry.endswith(suffix) for suffix in SUFFIXES) and tail != "egg-info":
        return head
    return None


def _listing(directory):
    try:
        entries = os.listdir(directory)
    except OSError:
        return []
    names = []
    for entry in entries:
        name = _module_name(entry, directory)
        if name is not None:
            names.append(name)
    return names


def _mtime(directory):
    try:
        return os.stat(directory or ".").st_mtime
    except OSError:
        return None


def top_level_modules():
    """Every importable top-level module name: builtins, sys.path directories.

    Cached while sys.path and its directories stay the same (a `%pip install` changes a directory).
    """
    key = tuple((p, _mtime(p)) for p in sys.path if isinstance(p, str))
    if _cache["key"] != key:
        names = set(sys.builtin_module_names)
        for entry, _ in key:
            names.update(_listing(entry or "."))
        names.update(n for n in sys.modules if "." not in n and not n.startswith("_rpyc_ikernel"))
        _cache["key"] = key
        _cache["names"] = tuple(sorted(names))
    return _cache["names"]


def package_dirs(dotted):
    """The directories of package `dotted` ('xml.etree'), from sys.modules or sys.path, not importing it."""
    module = sys.modules.get(dotted)
    path = getattr(module, "__path__", None) if module is not None else None
    if path is not None:
        try:
            return [p for p in path if isinstance(p, str)]
        except Exception:
            return []
    parts = dotted.split(".")
    dirs = []
    for entry in sys.path:
        if isinstance(entry, str):
            candidate = os.path.join(entry or ".", *parts)
            if os.path.isdir(candidate):
                dirs.append(candidate)
    return dirs


def submodules(dotted):
    """The names of the modules inside package `dotted`."""
    names = set()
    for directory in package_dirs(dotted):
        names.update(n for n in _listing(directory) if n != "__init__")
    prefix = dotted + "."
    for loaded in list(sys.modules):  # os.path is a module of its own, not a file in a package
        if loaded.startswith(prefix) and "." not in loaded[len(prefix) :]:
            names.add(loaded[len(prefix) :])
    return sorted(names)


def module_names(dotted):
    """The names module `dotted` defines: from its dict when loaded, else from its source (ast), plus
    its submodules. Nothing is imported or run."""
    names = set(submodules(dotted))
    module = sys.modules.get(dotted)
    if module is not None:
        try:
            names.update(
                k for k in vars(module) if isinstance(k, str)
            )  # not dir(): a module __dir__ runs code
        except TypeError:
            pass
        return sorted(names)
    source = _source_file(dotted)
    if source is not None:
        names.update(_names_in_source(source))
    return sorted(names)


def _source_file(dotted):
    parts = dotted.split(".")
    for entry in sys.path:
        if not isinstance(entry, str):
            continue
        base = os.path.join(entry or ".", *parts)
        for candidate in (base + ".py", os.path.join(base, "__init__.py")):
            if os.path.isfile(candidate):
                return candidate
    return None


def _names_in_source(path):
    """Top-level names a module's source binds (def, class, assignments, imports), by ast."""
    try:
        stat = os.stat(path)
        if stat.st_size > MAX_SOURCE:
            return ()
        key = (path, stat.st_mtime)
        if key in _source_names:
            return _source_names[key]
        with open(path, "rb") as handle:
            tree = ast.parse(handle.read(), path)
    except (OSError, SyntaxError, ValueError):
        return ()
    names = set()
    for node in tree.body:
        _bound_names(node, names)
    _source_names.clear()  # keep one module's names: memory stays small on a small board
    _source_names[key] = tuple(names)
    return _source_names[key]


def _bound_names(node, names):
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        names.add(node.name)
    elif isinstance(node, (ast.Import, ast.ImportFrom)):
        for alias in node.names:
            if alias.name != "*":
                names.add((alias.asname or alias.name).split(".")[0])
    elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        for target in targets:
            for sub in ast.walk(target):
                if isinstance(sub, ast.Name):
                    names.add(sub.id)
    elif isinstance(node, (ast.If, ast.Try)):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.stmt):
                _bound_names(child, names)
            elif isinstance(child, ast.ExceptHandler):
                for inner in child.body:
                    _bound_names(inner, names)
