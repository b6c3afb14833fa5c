"""Completion from the board namespace: names, attributes and %magics, with Jupyter's types.

Loaded on the first completion request. Nothing is evaluated but attribute look-ups of the parent of
a dotted name: a property of a board object may read a sensor.
"""

import builtins
import inspect
import keyword
import re

MAX_TYPED_MATCHES = 200  # beyond this, completions come without types (each costs an attribute lookup)
MISSING = object()  # what resolve() returns for a name that is not there

_NAME_CHAIN = re.compile(r"[A-Za-z_][\w]*(?:\.[A-Za-z_]\w*)*\.?$")
_MAGIC_PREFIX = re.compile(r"^\s*(%%?)([A-Za-z_]\w*)?$")


def resolve(namespace, dotted):
    """Look up a dotted name without evaluating arbitrary code (attributes only); MISSING if absent."""
    parts = dotted.split(".")
    if parts[0] in namespace:
        obj = namespace[parts[0]]
    elif hasattr(builtins, parts[0]):
        obj = getattr(builtins, parts[0])
    else:
        return MISSING
    for part in parts[1:]:
        try:
            obj = getattr(obj, part)
        except Exception:
            return MISSING
    return obj


def _kind(obj):
    if inspect.ismodule(obj):
        return "module"
    if inspect.isclass(obj):
        return "class"
    if inspect.isroutine(obj):
        return "function"
    return "instance"


def _attribute_matches(namespace, word):
    """`obj.pre` -> obj's attributes starting with "pre", found with dir() only.

    rlcompleter evaluates the expression and, before Python 3.10, reads every matching attribute.
    """
    parent_name, _, prefix = word.rpartition(".")
    parent = resolve(namespace, parent_name)
    if parent is MISSING:
        return []
    try:
        names = set(dir(parent))
    except Exception:
        return []
    if not prefix:
        names = set(n for n in names if not n.startswith("_"))
    elif prefix == "_":
        names = set(n for n in names if not n.startswith("__"))
    return [parent_name + "." + name for name in sorted(names) if name.startswith(prefix)]


def _name_matches(namespace, word):
    """Names and keywords starting with word, from rlcompleter (namespace first, then builtins)."""
    import rlcompleter  # loads readline: only here, ~0.8 MB of a small board's memory

    completer = rlcompleter.Completer(namespace)
    matches = []
    for state in range(1000):
        try:
            candidate = completer.complete(word, state)
        except Exception:
            candidate = None
        if candidate is None:
            break
        # rlcompleter adds "(" or "()" to callables, " " or ":" to keywords
        if candidate.endswith("()"):
            candidate = candidate[:-2]
        candidate = candidate.rstrip("( :")
        if candidate not in matches:
            matches.append(candidate)
    return matches


def _reply(matches, start, end, types):
    return {
        "matches": matches,
        "cursor_start": start,
        "cursor_end": end,
        "metadata": {"_jupyter_types_experimental": types},
        "status": "ok",
    }


def _complete_magic(line_before, cursor_pos):
    """`%ti` completes to %time, %timeit; `%%wr` to %%writefile (the board's magics)."""
    match = _MAGIC_PREFIX.match(line_before)
    if not match:
        return None
    from .magics import BoardShell

    marks, partial = match.group(1), match.group(2) or ""
    names = BoardShell.list_cell_magics() if marks == "%%" else BoardShell.list_line_magics()
    matches = [marks + name for name in names if name.startswith(partial)]
    start = cursor_pos - len(marks) - len(partial)
    types = [{"start": start, "end": cursor_pos, "text": m, "type": "magic"} for m in matches]
    return _reply(matches, start, cursor_pos, types)


def complete(namespace, code, cursor_pos):
    """Names and attributes from the board namespace that complete the word before the cursor."""
    before = code[:cursor_pos]
    magic = _complete_magic(before[before.rfind("\n") + 1 :], cursor_pos)
    if magic is not None:
        return magic
    match = _NAME_CHAIN.search(before)
    word = match.group(0) if match else ""
    try:
        namespace = dict(namespace)  # a running cell may change it meanwhile
    except RuntimeError:
        namespace = {}
    matches = []
    if "." in word:
        matches = _attribute_matches(namespace, word)
    elif word:
        hidden = word.startswith("_")
        matches = [m for m in _name_matches(namespace, word) if hidden or not m.startswith("_")]
    start = cursor_pos - len(word)
    types = []
    parents = {}
    for candidate in matches[:MAX_TYPED_MATCHES]:
        kind = "keyword" if keyword.iskeyword(candidate) else _match_kind(namespace, candidate, parents)
        types.append({"start": start, "end": cursor_pos, "text": candidate, "type": kind})
    return _reply(matches, start, cursor_pos, types)


def _match_kind(namespace, dotted, parents):
    """The Jupyter type of a completion; a property is named, not run (it may read hardware)."""
    parent_name, _, attribute = dotted.rpartition(".")
    if not parent_name:
        return _kind(resolve(namespace, dotted))
    if parent_name not in parents:
        parents[parent_name] = resolve(namespace, parent_name)
    parent = parents[parent_name]
    if parent is MISSING:
        return "instance"
    try:
        static = inspect.getattr_static(parent, attribute)
    except AttributeError:
        static = MISSING
    if isinstance(static, property):
        return "property"
    try:
        return _kind(getattr(parent, attribute))
    except Exception:
        return "instance"
