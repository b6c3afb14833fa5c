"""Your variables on the board: %who, %who_ls, %whos, %reset, and `obj?` inside a cell (%pinfo)."""

from ..errors import UsageError
from ..formatters import plain_text
from ..names import MISSING, resolve
from ..oinspect import describe
from .base import Magics


class NamespaceMagics(Magics):
    def _user_names(self, type_names=()):
        hidden = self.session.hidden_names
        names = []
        for name, value in list(self.user_ns.items()):
            if name.startswith("_") or name in hidden:
                continue
            if type_names and type(value).__name__ not in type_names:
                continue
            names.append(name)
        return sorted(names)

    def line_who(self, line):
        """Print the names you defined on the board (optionally only of some types: %who int str)."""
        names = self._user_names(line.split())
        print("\t".join(names) if names else "Interactive namespace is empty.")

    def line_who_ls(self, line):
        return self._user_names(line.split())

    def line_whos(self, line):
        """A table of your variables on the board: name, type, value."""
        names = self._user_names(line.split())
        if not names:
            print("Interactive namespace is empty.")
            return
        rows = []
        for name in names:
            value = self.user_ns[name]
            text = plain_text(value).replace("\n", " ")
            rows.append((name, type(value).__name__, text if len(text) <= 60 else text[:57] + "..."))
        name_width = max(len("Variable"), max(len(r[0]) for r in rows)) + 3
        type_width = max(len("Type"), max(len(r[1]) for r in rows)) + 3
        print("Variable".ljust(name_width) + "Type".ljust(type_width) + "Data/Info")
        print("-" * (name_width + type_width + 9))
        for name, type_name, text in rows:
            print(name.ljust(name_width) + type_name.ljust(type_width) + text)

    def line_reset(self, line):
        """Delete your variables on the board ('%reset -f' without asking)."""
        if "-f" not in line.split():
            answer = input("Once deleted, variables cannot be recovered. Proceed (y/[n])? ")
            if not answer.strip().lower().startswith("y"):
                print("Nothing done.")
                return
        for name in list(self.user_ns):
            if name not in self.session.hidden_names:
                del self.user_ns[name]
        self.session.history.flush_outputs(self.user_ns)

    def line_pinfo(self, line, detail_level=0):
        """`obj?` inside a cell: print the board object's help."""
        name = line.strip()
        obj = resolve(self.user_ns, name)
        if obj is MISSING:
            print("Object `%s` not found." % name)
        else:
            print(describe(obj, name, detail_level))

    def line_pinfo2(self, line):
        self.line_pinfo(line, detail_level=1)

    def _object(self, line, magic):
        name = line.strip()
        obj = resolve(self.user_ns, name) if name else MISSING
        if obj is MISSING:
            raise UsageError("%s: object `%s` not found on the board" % (magic, name))
        return obj

    def line_psource(self, line):
        """Print the source of a board object."""
        import inspect

        try:
            print(inspect.getsource(self._object(line, "%psource")).rstrip("\n"))
        except (OSError, TypeError):
            print("No source found for %s" % line.strip())

    def line_pdoc(self, line):
        """Print the docstring of a board object."""
        import inspect

        print(inspect.getdoc(self._object(line, "%pdoc")) or "No documentation found for %s" % line.strip())

    def line_pdef(self, line):
        """Print the call signature of a board object."""
        import inspect

        obj = self._object(line, "%pdef")
        try:
            print(line.strip() + str(inspect.signature(obj)))
        except (TypeError, ValueError):
            print("No definition header found for %s" % line.strip())

    def line_psearch(self, line):
        """Names in the board namespace matching a wildcard pattern: '%psearch a*' (IPython's, simplified)."""
        import fnmatch

        words = line.split()
        pattern = words[0] if words else "*"
        scope = self.user_ns
        prefix = ""
        if "." in pattern:
            parent, _, pattern = pattern.rpartition(".")
            scope_obj = self._object(parent, "%psearch")
            scope = dict((n, None) for n in dir(scope_obj))
            prefix = parent + "."
        shown = "-a" in words or pattern.startswith("_")
        for name in sorted(scope):
            if fnmatch.fnmatchcase(name, pattern) and (shown or not name.startswith("_")):
                print(prefix + name)
