"""A cell's code compiled and run as IPython does it: statements, then the last expression's value.

Shared by the session (every cell) and the magics that run code (%time, %timeit). Imports nothing of
the agent.
"""

import ast
import linecache


def compile_cell(source, filename):
    """(statements, last expression or None) compiled like IPython does a cell; registers the
    source with linecache so tracebacks show the lines."""
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    tree = ast.parse(source, filename, "exec")
    last = None
    if tree.body and isinstance(tree.body[-1], ast.Expr):
        last = ast.Expression(tree.body.pop().value)
    body = compile(tree, filename, "exec", TOP_LEVEL_AWAIT, dont_inherit=True)
    tail = compile(last, filename, "eval", TOP_LEVEL_AWAIT, dont_inherit=True) if last is not None else None
    return body, tail


TOP_LEVEL_AWAIT = getattr(ast, "PyCF_ALLOW_TOP_LEVEL_AWAIT", 0)  # Python 3.8+: `await` in a cell
CO_COROUTINE = 0x0080  # inspect.CO_COROUTINE: the code of a cell that awaits


def run_compiled(code, namespace):
    """Run a code object of compile_cell; a cell with top-level `await` runs on an asyncio loop, as
    IPython's autoawait does (one loop per board process, kept between cells)."""
    value = eval(code, namespace)
    if code.co_flags & CO_COROUTINE:
        value = _event_loop().run_until_complete(value)
    return value


_loop = []


def _event_loop():
    import asyncio

    if not _loop or _loop[0].is_closed():
        _loop[:] = [asyncio.new_event_loop()]
    return _loop[0]


def last_statement_silenced(code):
    """IPython hides the result when the cell's last code line ends with ';'."""
    for line in reversed(code.splitlines()):
        stripped = line.split("#", 1)[0].strip() if "#" in line else line.strip()
        if stripped:
            return stripped.endswith(";")
    return False
