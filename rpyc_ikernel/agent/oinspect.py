"""Help on board objects (`obj?`, Shift-Tab): type, signature, docstring, file and source.

Loaded on the first inspection request.
"""

import inspect
import keyword
import linecache
import re

from .formatters import plain_text
from .names import MISSING, Budget, resolve

MAX_LINE = 4000  # characters around the cursor looked at (a 1 MB line)
SLOW_REPR = "<its repr took too long>"

_WORD = re.compile(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*")
_CALLEE = re.compile(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*$")


def name_at_cursor(code, cursor_pos):
    """The dotted name under the cursor, or the function whose call the cursor is in."""
    line_start = code.rfind("\n", 0, cursor_pos) + 1
    line_end = code.find("\n", cursor_pos)
    line_end = line_end if line_end >= 0 else len(code)
    line_start = max(line_start, cursor_pos - MAX_LINE)
    line = code[line_start : min(line_end, cursor_pos + MAX_LINE)]
    col = cursor_pos - line_start
    for match in _WORD.finditer(line):
        if match.start() <= col <= match.end():
            if keyword.iskeyword(match.group(0)):
                break
            return match.group(0)
    depth = 0
    for index in range(min(col, len(line)) - 1, -1, -1):
        char = line[index]
        if char == ")":
            depth += 1
        elif char == "(":
            if depth == 0:
                match = _CALLEE.search(line[:index].rstrip())
                if match:
                    return match.group(0)
            else:
                depth -= 1
    return ""


def _defined_in_a_cell(obj):
    """A class from the session's namespace: inspect would look for it in the server's __main__."""
    return inspect.isclass(obj) and getattr(obj, "__module__", None) == "__main__"


def _object_file(obj):
    if _defined_in_a_cell(obj):
        for member in vars(obj).values():
            code = getattr(getattr(member, "__func__", member), "__code__", None)
            if code is not None:
                return code.co_filename
        return None
    try:
        return inspect.getfile(obj)
    except TypeError:
        return None


def _object_source(obj, path):
    if not _defined_in_a_cell(obj):
        try:
            return inspect.getsource(obj)
        except (OSError, TypeError):
            return None
    lines = linecache.getlines(path) if path else []
    start = re.compile(r"^\s*class\s+%s\b" % re.escape(obj.__name__))
    for index, line in enumerate(lines):
        if start.match(line):
            return "".join(inspect.getblock(lines[index:]))
    return None


def describe(obj, name, detail_level, budget=None):
    """An IPython-like help text: type, signature, docstring, file and (detail 1) source.

    With a budget, the object's repr (user code: it may hang) gets only the time left in it.
    """
    fields = []
    try:
        signature = str(inspect.signature(obj)) if callable(obj) else None
    except (TypeError, ValueError):
        signature = None
    if signature is not None:
        fields.append(("Init signature" if inspect.isclass(obj) else "Signature", name + signature))
    fields.append(("Type", type(obj).__name__))
    if not (inspect.isroutine(obj) or inspect.isclass(obj) or inspect.ismodule(obj)):
        text = plain_text(obj) if budget is None else budget.call(plain_text, SLOW_REPR, obj)
        if len(text) > 200:
            text = text[:200] + "..."
        fields.append(("String form", text))
    path = _object_file(obj)
    if path is not None:
        fields.append(("File", path))
    source = _object_source(obj, path) if detail_level > 0 else None
    docstring = inspect.getdoc(obj) or "<no docstring>"
    width = max(12, max(len(label) + 2 for label, _ in fields))
    lines = [(label + ":").ljust(width) + str(value) for label, value in fields]
    if source is not None:
        lines.append("Source:")
        lines.append(source.rstrip("\n"))
    else:
        lines.append("Docstring:")
        lines.append(docstring)
    return "\n".join(lines)


def inspect_object(namespace, code, cursor_pos, detail_level):
    """The inspect_reply content for the name at the cursor."""
    name = name_at_cursor(code, cursor_pos)
    budget = Budget()
    obj = budget.call(resolve, MISSING, namespace, name) if name else MISSING
    if obj is MISSING:
        return {"status": "ok", "found": False, "data": {}, "metadata": {}}
    return {
        "status": "ok",
        "found": True,
        "data": {"text/plain": describe(obj, name, detail_level, budget)},
        "metadata": {},
    }
