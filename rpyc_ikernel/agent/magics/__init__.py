"""`get_ipython()` on the board: the shell commands and %magics a notebook user expects.

The kernel rewrites `!cmd`, `x = !cmd`, `%magic args` and `%%magic` cells with IPython's own input
transformer into calls like ``get_ipython().system('cmd')``; BoardShell is the object those calls
reach. It runs against the session's namespace on the board. Magics that only make sense in the
kernel process, or that this small shim does not have, fail with one UsageError line. The magics
are grouped by topic as IPython's are, each group an object of the shell that keeps its own state
(base.py); this package loads when a cell first calls get_ipython().
"""

import re

from ..errors import UsageError
from .base import Magics
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


class BasicMagics(Magics):
    def line_lsmagic(self, line):
        """List the magics the board supports."""
        print("Line magics (run on the board): " + " ".join("%" + n for n in BoardShell.list_line_magics()))
        print("Cell magics (run on the board): " + " ".join("%%" + n for n in BoardShell.list_cell_magics()))
        print("!command runs in the board's shell; x = !command keeps its output lines.")


MAGIC_GROUPS = (ScriptMagics, ExecutionMagics, NamespaceMagics, OSMagics, PylabMagics, BasicMagics)


class BoardShell(object):
    """The board's stand-in for IPython's shell: the calls rewritten `!` and `%` lines make, and the
    magics of its groups (MAGIC_GROUPS, each with its own state), found by name."""

    def __init__(self, session):
        self.session = session
        self.script = ScriptMagics(self)  # `!cmd`: system() and getoutput()
        self.magic_groups = [self.script] + [
            group(self) for group in MAGIC_GROUPS if group is not ScriptMagics
        ]

    def get_ipython(self):
        """The board's stand-in for IPython's shell (what `!` and `%` lines call)."""
        return self

    @property
    def user_ns(self):
        return self.session.namespace

    def system(self, command):
        """`!cmd`: run it in the board's shell, its output streamed into the cell; sets _exit_code."""
        return self.script.system(command)

    def getoutput(self, command, split=True):
        """`x = !cmd` / `!!cmd`: the command's output (stdout and stderr) as a list of lines."""
        return self.script.getoutput(command, split)

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

    def find_magic(self, kind, name):
        """The method of magic `name` of kind "line" or "cell", or None."""
        for group in self.magic_groups:
            method = getattr(group, kind + "_" + name, None)
            if method is not None:
                return method
        return None

    def run_line_magic(self, name, line, _stack_depth=1):
        if name in SHELL_ALIASES:
            return self.system(("%s %s" % (SHELL_ALIASES[name], line)).strip())
        method = self.find_magic("line", name)
        if method is None:
            raise UsageError(self._not_here("%" + name))
        return method(line)

    def run_cell_magic(self, name, line, cell):
        if name in RAW_CELL_MAGICS:
            from ..display import display

            display({RAW_CELL_MAGICS[name]: cell, "text/plain": "<%s>" % name}, raw=True)
            return None
        method = self.find_magic("cell", name)
        if method is None:
            raise UsageError(self._not_here("%%" + name))
        return method(line, cell)

    def set_next_input(self, text, replace=False):
        """Put text in the next input cell (or replace this one): a payload of the cell's reply.

        As IPython's: one per cell, the last call wins (%load uses it with replace=True).
        """
        cell = self.session.cell
        if cell is not None:
            cell.payloads["set_next_input"] = {
                "source": "set_next_input",
                "text": text,
                "replace": bool(replace),
            }

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
        return sorted(set(_names(MAGIC_GROUPS, "line_") + list(SHELL_ALIASES)))

    @classmethod
    def list_cell_magics(cls):
        return sorted(set(_names(MAGIC_GROUPS, "cell_") + list(RAW_CELL_MAGICS)))

    def _not_here(self, magic):
        return (
            "%s is not available on the board (%%lsmagic lists what is);"
            " a '# exec(...)' line runs Python in the kernel instead" % magic
        )


def _names(groups, prefix):
    """The magic names the groups define with prefix ("line_" or "cell_")."""
    return [n[len(prefix) :] for group in groups for n in dir(group) if n.startswith(prefix)]
