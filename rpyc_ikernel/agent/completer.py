"""Completion from the board: names, attributes, modules, files, dict keys, call keywords, %magics, !cmds.

Loaded on the first completion request. Nothing is imported or run to find matches (a property may
read a sensor, an import may start a motor): modules are listed from sys.path and read with ast,
attributes come from dir() of the parent of a dotted name (the only look-ups: attribute gets of that
parent chain). User code that completion does reach (a __dir__, a __getattr__, a signature) runs in
a helper thread with a time budget: a slow or hanging one gives partial results, never a stuck board.
"""

import builtins
import inspect
import keyword
import re

from .modnames import module_names, submodules, top_level_modules
from .names import MISSING, Budget, resolve
from .pathnames import command_matches, path_matches

MAX_TYPED_MATCHES = 200  # beyond this, completions come without types (each costs an attribute lookup)
MAX_LINE = 4000  # characters before the cursor looked at

_NAME_CHAIN = re.compile(r"[A-Za-z_][\w]*(?:\.[A-Za-z_]\w*)*\.?$")
_WORD = re.compile(r"[A-Za-z_]\w*$")
_MAGIC_PREFIX = re.compile(r"^\s*(%%?)([A-Za-z_]\w*)?$")
_SHELL_PREFIX = re.compile(r"^\s*!!?(\S*)$")
_IMPORT = re.compile(r"^\s*import\s+(?:[\w.]+(?:\s+as\s+\w+)?\s*,\s*)*([\w.]*)$")
_FROM = re.compile(r"^\s*from\s+([\w.]*)$")
_FROM_IMPORT = re.compile(r"^\s*from\s+([\w.]+)\s+import\s+\(?\s*(?:\w+(?:\s+as\s+\w+)?\s*,\s*)*(\w*)$")
_CELL_IMPORT = re.compile(r"^\s*import\s+([\w.]+)(?:\s+as\s+(\w+))?", re.M)
_CELL_FROM_IMPORT = re.compile(r"^\s*from\s+([\w.]+)\s+import\s+(\w+)(?:\s+as\s+(\w+))?", re.M)
_CALLEE = re.compile(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*$")


def _kind(obj):
    if inspect.ismodule(obj):
        return "module"
    if inspect.isclass(obj):
        return "class"
    if inspect.isroutine(obj):
        return "function"
    return "instance"


def _filter_private(names, prefix):
    if not prefix:
        return [n for n in names if not n.startswith("_")]
    if prefix == "_":
        return [n for n in names if not n.startswith("__")]
    return names


def _cell_modules(code):
    """Names a cell binds to modules by its import lines ({'np': 'numpy', 'path': 'os.path'})."""
    bound = {}
    for match in _CELL_IMPORT.finditer(code):
        dotted, alias = match.group(1), match.group(2)
        if alias:
            bound[alias] = dotted
        else:
            bound[dotted.split(".")[0]] = dotted.split(".")[0]
    for match in _CELL_FROM_IMPORT.finditer(code):
        bound[match.group(3) or match.group(2)] = match.group(1) + "." + match.group(2)
    return bound


def _resolve(namespace, dotted, budget):
    """resolve() under the budget: a dotted name runs attribute look-ups (a __getattr__ may hang)."""
    if "." not in dotted:
        return resolve(namespace, dotted)
    return budget.call(resolve, MISSING, namespace, dotted)


def _attribute_names(namespace, parent_name, code, budget):
    """The attribute names of a dotted parent: dir() of the object, or a module the cell imports."""
    parent = _resolve(namespace, parent_name, budget)
    if parent is not MISSING:
        if inspect.ismodule(parent):
            try:
                return list(vars(parent))
            except TypeError:
                return []
        return budget.call(dir, [], parent)
    root, _, rest = parent_name.partition(".")
    dotted = _cell_modules(code).get(root)
    if dotted is None:
        return []
    return module_names(dotted + ("." + rest if rest else ""))


def _attribute_matches(namespace, word, code, budget):
    """`obj.pre` -> obj's attributes starting with "pre"."""
    parent_name, _, prefix = word.rpartition(".")
    names = _prefixed(_attribute_names(namespace, parent_name, code, budget), prefix)
    return [parent_name + "." + name for name in _filter_private(sorted(set(names)), prefix)]


def _prefixed(names, prefix):
    """The names that start with prefix (strings only: a namespace may hold other keys)."""
    try:
        return [n for n in names if n.startswith(prefix)]
    except (AttributeError, TypeError):
        return [n for n in names if isinstance(n, str) and n.startswith(prefix)]


def _name_matches(namespace, word):
    """Names of the namespace, builtins and keywords starting with word (nothing is evaluated)."""
    found = set(_prefixed(namespace, word))
    found.update(_prefixed(vars(builtins), word))
    found.update(k for k in keyword.kwlist if k.startswith(word))
    return _filter_private(sorted(found), word)


def _reply(matches, start, end, types):
    return {
        "matches": matches,
        "cursor_start": start,
        "cursor_end": end,
        "metadata": {"_jupyter_types_experimental": types},
        "status": "ok",
    }


def _simple_reply(matches, start, end, kind):
    types = [{"start": start, "end": end, "text": m, "type": kind} for m in matches[:MAX_TYPED_MATCHES]]
    return _reply(matches, start, end, types)


def _complete_magic(line_before, cursor_pos):
    """`%ti` completes to %time, %%time, %timeit; `%%wr` to %%writefile (the board's magics)."""
    match = _MAGIC_PREFIX.match(line_before)
    if not match:
        return None
    from .magics import BoardShell  # the magics load on the first `%` completion

    marks, partial = match.group(1), match.group(2) or ""
    names = ["%" + n for n in BoardShell.list_line_magics()] if marks == "%" else []
    names += ["%%" + n for n in BoardShell.list_cell_magics()]
    matches = [m for m in names if m.lstrip("%").startswith(partial)]
    start = cursor_pos - len(marks) - len(partial)
    return _simple_reply(matches, start, cursor_pos, "magic")


# Options of the board's magics, and the magics whose argument is a path on the board
MAGIC_OPTIONS = {
    "timeit": ["-n", "-r", "-q", "-o"],
    "history": ["-n", "-t", "-l", "-g"],
    "bash": ["--out", "--err", "--no-raise-error"],
    "sh": ["--out", "--err", "--no-raise-error"],
    "script": ["--out", "--err", "--no-raise-error"],
    "cd": ["-q"],
    "reset": ["-f"],
    "run": ["-i"],
    "writefile": ["-a", "--append"],
    "psearch": ["-a"],
}
PATH_MAGICS = ("cd", "run", "load", "writefile", "ls", "cat", "cp", "mv", "rm", "rmdir", "mkdir")
_MAGIC_ARGUMENT = re.compile(r"^\s*%%?([A-Za-z_]\w*)\s+(?:.*\s)?(\S*)$")


def _complete_magic_argument(line_before, cursor_pos):
    """`%timeit -` -> its options; `%cd /t`, `%run sc` -> paths on the board (directories for %cd)."""
    match = _MAGIC_ARGUMENT.match(line_before)
    if not match:
        return None
    magic, word = match.group(1), match.group(2)
    start = cursor_pos - len(word)
    if word.startswith("-"):
        options = [o for o in MAGIC_OPTIONS.get(magic, ()) if o.startswith(word)]
        return _simple_reply(options, start, cursor_pos, "option")
    if magic in PATH_MAGICS:
        paths = path_matches(word)
        if magic == "cd":
            paths = [p for p in paths if p.endswith("/")]
        return _simple_reply(paths, start, cursor_pos, "path")
    return None


def _complete_shell(line_before, cursor_pos):
    """`!ec` -> commands on the board's PATH; `!ls /tm` -> paths."""
    match = _SHELL_PREFIX.match(line_before)
    if match:
        word = match.group(1)
        return _simple_reply(command_matches(word), cursor_pos - len(word), cursor_pos, "command")
    if line_before.lstrip().startswith("!"):
        word = re.split(r"[\s'\"=]", line_before)[-1]
        return _simple_reply(path_matches(word), cursor_pos - len(word), cursor_pos, "path")
    return None


def _complete_import(line_before, cursor_pos):
    """Module names after `import` / `from`, a module's names after `from X import`."""
    match = _IMPORT.match(line_before) or _FROM.match(line_before)
    if match:
        word = match.group(1)
        package, dot, prefix = word.rpartition(".")
        names = submodules(package) if dot else top_level_modules()
        found = [package + dot + n for n in _filter_private(names, prefix) if n.startswith(prefix)]
        return _simple_reply(found, cursor_pos - len(word), cursor_pos, "module")
    match = _FROM_IMPORT.match(line_before)
    if match:
        module, prefix = match.group(1), match.group(2)
        names = [n for n in _filter_private(module_names(module), prefix) if n.startswith(prefix)]
        return _simple_reply(names, cursor_pos - len(prefix), cursor_pos, "instance")
    return None


def _open_string(line):
    """(index after the opening quote, quote) when the line ends inside a string, else None."""
    quote, start, index = None, 0, 0
    while index < len(line):
        char = line[index]
        if quote is None:
            if char == "#":
                return None
            if char in "'\"":
                triple = line[index : index + 3] == char * 3
                quote = char * 3 if triple else char
                index += len(quote)
                start = index
                continue
        elif char == "\\":
            index += 2
            continue
        elif line.startswith(quote, index):
            index += len(quote)
            quote = None
            continue
        index += 1
    return (start, quote) if quote is not None else None


def _complete_in_string(namespace, line_before, cursor_pos, budget):
    """Inside a string: dict keys after `d["`, else file names on the board."""
    found = _open_string(line_before)
    if found is None:
        return None
    start, quote = found
    text = line_before[start:]
    opener = line_before[: start - len(quote)].rstrip()
    line_start = cursor_pos - len(line_before)
    if opener.endswith("[") and len(quote) == 1:
        match = _CALLEE.search(opener[:-1].rstrip())
        keys = _dict_keys(namespace, match.group(0), budget) if match else None
        if keys is not None:
            names = [k for k in keys if isinstance(k, str) and k.startswith(text)]
            return _simple_reply(names, line_start + start, cursor_pos, "dict key")
    return _simple_reply(path_matches(text), line_start + start, cursor_pos, "path")


def _dict_keys(namespace, name, budget):
    obj = _resolve(namespace, name, budget)
    if not isinstance(obj, dict):
        return None
    return budget.call(lambda: list(dict.keys(obj))[: MAX_TYPED_MATCHES * 10], [])


def _call_keywords(namespace, line_before, word, budget):
    """`f(a, ke` -> `key=` for f's parameters (inspect.signature; nothing is called)."""
    depth = 0
    for index in range(len(line_before) - len(word) - 1, -1, -1):
        char = line_before[index]
        if char in ")]}":
            depth += 1
        elif char in "([{":
            if depth:
                depth -= 1
                continue
            if char != "(":
                return []
            match = _CALLEE.search(line_before[:index].rstrip())
            if not match or keyword.iskeyword(match.group(0)):
                return []
            callee = _resolve(namespace, match.group(0), budget)
            if callee is MISSING or not callable(callee):
                return []
            params = budget.call(_parameters, [], callee)
            kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
            return [p.name + "=" for p in params if p.kind in kinds and p.name.startswith(word)]
    return []


def _parameters(callee):
    return list(inspect.signature(callee).parameters.values())


def _bracket_before(line_before, word):
    """`d[` right before the cursor: dict keys as literals (IPython offers them quoted)."""
    rest = line_before[: len(line_before) - len(word)]
    if word or not rest.endswith("["):
        return None
    match = _CALLEE.search(rest[:-1].rstrip())
    return match.group(0) if match else None


def complete(namespace, code, cursor_pos):
    """The complete_reply content for the text before the cursor."""
    before = code[:cursor_pos]
    line = before[before.rfind("\n") + 1 :][-MAX_LINE:]  # a 1 MB line: its end is what counts
    for special in (_complete_magic, _complete_magic_argument, _complete_shell, _complete_import):
        reply = special(line, cursor_pos)
        if reply is not None:
            return reply
    try:
        namespace = dict(namespace)  # a running cell may change it meanwhile
    except RuntimeError:
        namespace = {}
    budget = Budget()
    reply = _complete_in_string(namespace, line, cursor_pos, budget)
    if reply is not None:
        return reply
    match = _NAME_CHAIN.search(line)
    word = match.group(0) if match else ""
    container = _bracket_before(line, word)
    if container is not None:
        keys = _dict_keys(namespace, container, budget)
        if keys:
            literals = [repr(k) for k in keys if isinstance(k, (str, bytes, int))]
            return _simple_reply(literals, cursor_pos, cursor_pos, "dict key")
    matches = []
    if "." in word:
        matches = _attribute_matches(namespace, word, code, budget)
    elif word:
        matches = _call_keywords(namespace, line, word, budget) + _name_matches(namespace, word)
    start = cursor_pos - len(word)
    return _reply(matches, start, cursor_pos, _types(namespace, matches, start, cursor_pos, budget))


def _types(namespace, matches, start, end, budget):
    """Jupyter's types of the matches; those the budget leaves no time for are 'instance'."""
    types = []
    parents = {}
    for candidate in matches[:MAX_TYPED_MATCHES]:
        if candidate.endswith("="):
            kind = "param"
        elif keyword.iskeyword(candidate):
            kind = "keyword"
        else:
            kind = _match_kind(namespace, candidate, parents, budget)
        types.append({"start": start, "end": end, "text": candidate, "type": kind})
    return types


def _match_kind(namespace, dotted, parents, budget):
    """The Jupyter type of a completion; a property is named, not run (it may read hardware)."""
    parent_name, _, attribute = dotted.rpartition(".")
    if not parent_name:
        return _kind(resolve(namespace, dotted))
    if parent_name not in parents:
        parents[parent_name] = _resolve(namespace, parent_name, budget)
    parent = parents[parent_name]
    if parent is MISSING:
        return "instance"
    if inspect.ismodule(parent):
        try:
            return _kind(vars(parent)[attribute])
        except (KeyError, TypeError):
            return "instance"
    try:
        static = inspect.getattr_static(parent, attribute)
    except AttributeError:
        static = MISSING
    if isinstance(static, property):
        return "property"
    if inspect.isroutine(static) or isinstance(static, (classmethod, staticmethod)):
        return "function"
    if static is not MISSING and not hasattr(type(static), "__get__"):
        return _kind(static)
    return budget.call(lambda: _kind(getattr(parent, attribute)), "instance")
