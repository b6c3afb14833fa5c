"""What board code imports from us: a stand-in `IPython` package, the inline matplotlib backend.

A finder first on sys.meta_path answers those imports. Only the names are known here; the modules
behind them (display.py, inline.py) load when board code imports them:

- `IPython` / `IPython.display` with display(), HTML, Image, ... when the board has no IPython;
  with the board's real IPython, its display() & co. use the running cell instead;
- the inline matplotlib backend, which `import matplotlib` selects (without setting MPLBACKEND in
  the environment, which child processes would inherit and fail on);
- getpass.getpass, which asks through the kernel.
"""

import sys
import threading

from . import wire

# Where IPython (7 and newer) defines display(); without a running IPython shell it only prints a repr.
IPYTHON_DISPLAY_MODULES = ("IPython.core.display_functions", "IPython.core.display")


class _BuiltLoader(object):
    """Loads a module by calling a function that fills it in."""

    def __init__(self, fill):
        self.fill = fill

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        self.fill(module)


class _ThenConfigure(object):
    """Wraps a real module's loader to run a function of ours right after the module loaded."""

    def __init__(self, loader, after):
        self._loader = loader
        self._after = after

    def create_module(self, spec):
        create = getattr(self._loader, "create_module", None)
        return create(spec) if create is not None else None

    def exec_module(self, module):
        self._loader.exec_module(module)
        self._after(module)

    def __getattr__(self, name):
        return getattr(self._loader, name)


class ImportHooks(object):
    """A meta path finder for the imports listed in this module's docstring."""

    rpyc_ikernel_finder = True

    def __init__(self):
        self._searching = threading.local()

    def _find_elsewhere(self, name, path, target):
        if getattr(self._searching, "active", False):
            return None
        self._searching.active = True
        try:
            for finder in sys.meta_path:
                if getattr(finder, "rpyc_ikernel_finder", False):
                    continue
                find_spec = getattr(finder, "find_spec", None)
                if find_spec is None:
                    continue
                spec = find_spec(name, path, target)
                if spec is not None:
                    return spec
            return None
        finally:
            self._searching.active = False

    def _configured(self, name, path, target, after):
        spec = self._find_elsewhere(name, path, target)
        if spec is not None and spec.loader is not None:
            spec.loader = _ThenConfigure(spec.loader, after)
        return spec

    def find_spec(self, name, path=None, target=None):
        if name == wire.MPL_BACKEND_MODULE:
            from .inline import fill_backend

            return _spec(name, fill_backend)
        if name == "matplotlib":
            from .inline import configure_matplotlib

            return self._configured(name, path, target, configure_matplotlib)
        if name == "getpass":
            from .iostream import route_getpass

            return self._configured(name, path, target, route_getpass)
        if name == "IPython":
            if self._find_elsewhere(name, path, target) is not None:
                return None  # the board's real IPython
            return _spec(name, fill_ipython_shim, is_package=True)
        if name == "IPython.display" and getattr(sys.modules.get("IPython"), "rpyc_ikernel_shim", False):
            from .display import fill_display_shim

            return _spec(name, fill_display_shim)
        if name in IPYTHON_DISPLAY_MODULES:
            return self._configured(name, path, target, route_ipython_display)
        return None


def _spec(name, fill, is_package=False):
    from importlib.util import spec_from_loader

    return spec_from_loader(name, _BuiltLoader(fill), is_package=is_package)


def install_import_hooks():
    """Put (this version's) ImportHooks first on sys.meta_path, replacing one of an older agent."""
    sys.meta_path[:] = [f for f in sys.meta_path if not getattr(f, "rpyc_ikernel_finder", False)]
    sys.meta_path.insert(0, ImportHooks())
    for name in IPYTHON_DISPLAY_MODULES + ("IPython.display", "IPython"):
        module = sys.modules.get(name)
        if module is not None and not getattr(module, "rpyc_ikernel_shim", False):
            route_ipython_display(module)
    if "matplotlib" in sys.modules:  # imported before this hook: inline.py registers the figure format
        from . import inline  # noqa: F401


def route_ipython_display(module):
    """The board's real IPython has no shell in this process: its display() & co. use the cell's."""
    if not any(hasattr(module, name) for name in ("display", "update_display", "clear_output")):
        return
    from . import display

    for name in ("display", "update_display", "clear_output"):
        if hasattr(module, name):
            setattr(module, name, getattr(display, name))


def fill_ipython_shim(module):
    """A stand-in `IPython` package: only `IPython.display`; get_ipython() says no IPython runs."""
    module.rpyc_ikernel_shim = True
    module.__path__ = []
    module.__version__ = "0.0.0"
    module.version_info = (0, 0, 0, "rpyc_ikernel")
    module.get_ipython = lambda: None
