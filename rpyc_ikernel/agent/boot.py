"""Serves the agent's modules from memory in the board process: one finder, one version at a time.

The kernel sends every module in one call (``rpyc_ikernel.bootstrap``): this module as text, the
others zlib-compressed in one blob with an index. This module runs first, in a module object of
its own; install() puts a SourceFinder first on sys.meta_path and imports the package. Sources stay
compressed; a module is decompressed and compiled when it is first imported, so a session pays only
for what it uses. Later connections with the same version find the package in sys.modules.

A module is compiled one top-level statement at a time (the index holds their first lines): the
compiler's peak memory grows with what it compiles at once, and a small board keeps that peak as
resident memory. Executed in order in the module's namespace, the statements do what the whole
module does (the agent's modules use no ``from __future__`` imports, which would apply per chunk).
"""

import sys
import zlib

FILE_PREFIX = __file__.rpartition("/")[0]  # tracebacks and inspect name the modules <prefix>/<path>


class SourceFinder(object):
    """Finds and loads the package's modules from the compressed sources it holds."""

    rpyc_ikernel_sources = True

    def __init__(self, package, blob, index):
        self.blob = blob
        self.paths = {}  # module name -> (path in the package, start, end in blob, statement lines)
        for path, start, end, statements in index:
            name = path[:-3].replace("/", ".")
            if name == "__init__" or name.endswith(".__init__"):
                name = name[: -len("__init__")]
            self.paths[(package + "." + name).rstrip(".")] = (path, start, end, statements)

    def find_spec(self, fullname, path=None, target=None):
        entry = self.paths.get(fullname)
        if entry is None:
            return None
        from importlib.machinery import ModuleSpec

        is_package = entry[0].endswith("__init__.py")
        spec = ModuleSpec(fullname, self, origin=FILE_PREFIX + "/" + entry[0], is_package=is_package)
        spec.has_location = True  # so the module gets __file__
        return spec

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        lines = self.get_source(module.__name__).splitlines(True)
        bounds = self.paths[module.__name__][3] + (len(lines) + 1,)
        for first, after in zip(bounds, bounds[1:]):
            text = "\n" * (first - 1) + "".join(lines[first - 1 : after - 1])  # keeps line numbers
            exec(compile(text, module.__file__, "exec", dont_inherit=True), module.__dict__)

    def get_source(self, fullname):
        start, end = self.paths[fullname][1:3]
        return zlib.decompress(self.blob[start:end]).decode("utf-8")

    def is_package(self, fullname):
        return self.paths[fullname][0].endswith("__init__.py")


def install(boot, package, version, blob, index):
    """The agent package of this version, imported now unless this process already has it.

    An older version is replaced: its modules leave sys.modules and its finder sys.meta_path.
    """
    current = sys.modules.get(package)
    if getattr(current, "VERSION", None) == version:
        return current
    for name in [name for name in sys.modules if name == package or name.startswith(package + ".")]:
        del sys.modules[name]
    sys.meta_path[:] = [f for f in sys.meta_path if not getattr(f, "rpyc_ikernel_sources", False)]
    finder = SourceFinder(package, blob, index)
    sys.meta_path.insert(0, finder)
    sys.modules[boot.__name__] = boot
    agent = __import__(package)
    agent.boot = boot
    agent.VERSION = version
    return agent
