"""`get_ipython()` on the board: the shell commands and %magics a notebook user expects.

The kernel rewrites `!cmd`, `x = !cmd`, `%magic args` and `%%magic` cells with IPython's own input
transformer into calls like ``get_ipython().system('cmd')``; BoardShell is the object those calls
reach. It runs against the session's namespace on the board. Magics that only make sense in the
kernel process, or that this small shim does not have, fail with one UsageError line. The magics
are grouped by topic as IPython's are; this package loads when a cell first calls get_ipython().
"""

import re

from ..errors import UsageError
from .execution import ExecutionMagics
from .namespace import NamespaceMagics
from .osm import OSMagics
from .pylab import PylabMagics
from .script import SHELL_ALIASES, ScriptMagics

RAW_CELL_MAGICS = {
    "html": "text/html",
    "markdown": "text/markdown",
    "latex": "text/latex",
    "svg": "image/svg+xml",
    "javascript": "application/javascript",
    "js": "application/javascript",
}


class BoardShell(ScriptMagics, ExecutionMagics, NamespaceMagics, OSMagics, PylabMagics):
    """The board's stand-in for IPython's shell; `line_NAME` / `cell_NAME` methods are the magics."""

    def __init__(self, session):
        self.session = session
        self._previous_dir = None

    def get_ipython(self):
        """The board's stand-in for IPython's shell (what `!` and `%` lines call)."""
        return self

    @property
    def user_ns(self):
        return self.session.namespace

    def var_expand(self, command):
        """IPython's expansion: {expression} and $name from the namespace; $$ is a literal $."""
        namespace = self.user_ns

        def expression(match):
            try:
                return str(eval(match.group(1), namespace))
            except Exception:
                return match.group(0)

        def name(match):
            if match.group(1) in namespace:
                return str(namespace[match.group(1)])
            return match.group(0)

        command = re.sub(r"\{([^{}]+)\}", expression, command)
        command = re.sub(r"(?<!\$)\$([A-Za-z_]\w*)", name, command)
        return command.replace("$$", "$")

    def run_line_magic(self, name, line, _stack_depth=1):
        if name in SHELL_ALIASES:
            return self.system(("%s %s" % (SHELL_ALIASES[name], line)).strip())
        method = getattr(self, "line_" + name, None)
        if method is None:
            raise UsageError(self._not_here("%" + name))
        return method(line)

    def run_cell_magic(self, name, line, cell):
        if name in RAW_CELL_MAGICS:
            from ..display import display

            display({RAW_CELL_MAGICS[name]: cell, "text/plain": "<%s>" % name}, raw=True)
            return None
        method = getattr(self, "cell_" + name, None)
        if method is None:
            raise UsageError(self._not_here("%%" + name))
        return method(line, cell)

    def set_next_input(self, text, replace=False):
        """Put text in the next input cell (or replace this one): a payload of the cell's reply.

        As IPython's: one per cell, the last call wins (%load uses it with replace=True).
        """
        payload = {"source": "set_next_input", "text": text, "replace": bool(replace)}
        self.session.payloads["set_next_input"] = payload

    def object_inspect(self, oname, detail_level=0):
        """What `oname?` shows, as IPython's shell answers it: found, name and the help text."""
        from ..names import MISSING, resolve
        from ..oinspect import describe

        obj = resolve(self.user_ns, oname)
        if obj is MISSING:
            return {"found": False, "name": oname}
        return {"found": True, "name": oname, "text/plain": describe(obj, oname, detail_level)}

    def magic(self, text):
        """IPython's old get_ipython().magic('name args')."""
        name, _, line = text.lstrip("%").partition(" ")
        return self.run_line_magic(name, line)

    @classmethod
    def list_line_magics(cls):
        names = [n[5:] for n in dir(cls) if n.startswith("line_")] + list(SHELL_ALIASES)
        return sorted(set(names))

    @classmethod
    def list_cell_magics(cls):
        return sorted(set([n[5:] for n in dir(cls) if n.startswith("cell_")] + list(RAW_CELL_MAGICS)))

    def _not_here(self, magic):
        return (
            "%s is not available on the board (%%lsmagic lists what is);"
            " a '# exec(...)' line runs Python in the kernel instead" % magic
        )

    def line_lsmagic(self, line):
        """List the magics the board supports."""
        print("Line magics (run on the board): " + " ".join("%" + n for n in self.list_line_magics()))
        print("Cell magics (run on the board): " + " ".join("%%" + n for n in self.list_cell_magics()))
        print("!command runs in the board's shell; x = !command keeps its output lines.")
