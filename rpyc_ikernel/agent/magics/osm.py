"""The board's operating system: %pwd, %cd, %env, %%writefile."""

import os
import re

from ..errors import UsageError
from .base import Magics


class OSMagics(Magics):
    def __init__(self, shell):
        Magics.__init__(self, shell)
        self._previous_dir = None  # where '%cd -' goes back to

    def line_pwd(self, line):
        """The board process's current directory."""
        return os.getcwd()

    def line_cd(self, line):
        """Change the board process's current directory ('%cd -' goes back)."""
        import shlex

        words = [w for w in shlex.split(line) if w != "-q"]
        target = words[0] if words else "~"
        if target == "-":
            if self._previous_dir is None:
                raise UsageError("%cd -: no previous directory")
            target = self._previous_dir
        before = os.getcwd()
        try:
            os.chdir(os.path.expanduser(target))
        except OSError as exc:
            raise UsageError("%%cd %s: %s" % (target, exc.strerror or exc))
        self._previous_dir = before
        if "-q" not in line.split():
            print(os.getcwd())

    def line_env(self, line):
        """The board's environment: '%env', '%env NAME', '%env NAME=value'."""
        line = line.strip()
        if not line:
            return dict(os.environ)
        match = re.match(r"^([^\s=]+)\s*(?:=\s*|\s+)(.*)$", line)
        if match:
            name, value = match.group(1), self.shell.var_expand(match.group(2))
            os.environ[name] = value
            print("env: %s=%s" % (name, value))
            return None
        if line not in os.environ:
            raise UsageError("Environment does not have key: %s" % line)
        return os.environ[line]

    def cell_writefile(self, line, cell):
        """Write the cell to a file on the board: '%%writefile [-a] FILE'."""
        import shlex

        words = shlex.split(line)
        append = "-a" in words or "--append" in words
        names = [w for w in words if w not in ("-a", "--append")]
        if len(names) != 1:
            raise UsageError("%%writefile needs one file name, e.g. %%writefile main.py")
        path = os.path.expanduser(names[0])
        exists = os.path.exists(path)
        with open(path, "a" if append else "w") as handle:
            handle.write(cell)
        verb = "Appending to" if append else ("Overwriting" if exists else "Writing")
        print("%s %s" % (verb, names[0]))
