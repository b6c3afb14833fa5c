"""Board-side helper: runs cells like IPython does, captures their output, completes and inspects.

The kernel sends this file's source to the board on connect and registers it as the module
``_rpyc_ikernel_agent`` in the board's rpyc server process. It must therefore use nothing but the
standard library and run on Python 3.7+.

Why it exists: a cell then costs one round trip (``Session.run``) instead of many chatty netref calls,
output comes back in batches (``Session.poll``), and a session's namespace outlives a dropped
connection so the kernel can reattach to it.

Every call the kernel makes returns plain ``str`` (JSON) or ``bytes``, which rpyc sends by value.
"""

from __future__ import annotations

import ast
import base64
import builtins
import codecs
import contextlib
import errno
import hashlib
import importlib.util
import inspect
import io
import json
import keyword
import linecache
import math
import os
import pprint
import re
import signal
import socket
import sys
import tempfile
import threading
import time
import traceback
import types
import uuid

AGENT_MODULE = "_rpyc_ikernel_agent"
STATE_MODULE = "_rpyc_ikernel_state"  # survives agent upgrades: thread routing, saved builtins
EXECUTOR_MODULE = "_rpyc_ikernel_executor"  # registered by our server: runs cells on the main thread

FLUSH_DELAY = 0.05  # seconds a batch of output may wait for more before it is sent
FLUSH_SIZE = 64 * 1024  # characters that make a batch worth sending at once
MAX_PENDING = 4 * 1024 * 1024  # a cell that prints faster than the link drains waits above this
MAX_ORPHAN = 1024 * 1024  # output of background threads kept while no cell runs

MIME_METHODS = (
    ("text/html", "_repr_html_"),
    ("text/markdown", "_repr_markdown_"),
    ("image/svg+xml", "_repr_svg_"),
    ("image/png", "_repr_png_"),
    ("image/jpeg", "_repr_jpeg_"),
    ("text/latex", "_repr_latex_"),
    ("application/json", "_repr_json_"),
    ("application/javascript", "_repr_javascript_"),
    ("application/pdf", "_repr_pdf_"),
)
BINARY_MIMES = ("image/png", "image/jpeg", "application/pdf")


class StdinNotImplementedError(IOError, NotImplementedError):
    """Raised by input() when the frontend cannot answer input requests (as in IPython)."""


class UsageError(Exception):
    """A magic used wrongly or not available on the board: shown as one line, like IPython's."""


# Tracebacks then say "UsageError: ..." rather than "_rpyc_ikernel_agent.UsageError: ...".
StdinNotImplementedError.__module__ = UsageError.__module__ = "builtins"


# --------------------------------------------------------------------------- shared process state


def _state() -> types.ModuleType:
    """The process-wide state shared by every agent version loaded into this board process."""
    state = sys.modules.get(STATE_MODULE)
    if state is None:
        state = types.ModuleType(STATE_MODULE)
        state.sinks = {}  # thread ident -> Session whose cell runs in that thread
        state.last_session = None  # where output of other threads goes
        state.original_stdout = sys.stdout
        state.original_stderr = sys.stderr
        state.original_input = builtins.input
        state.original_sleep = time.sleep
        state.boot_id = uuid.uuid4().hex  # tells a restarted board process from a reconnect
        state.started = time.time()
        sys.modules[STATE_MODULE] = state
    return state


def _current_session(state: types.ModuleType = None):
    state = state or _state()
    return state.sinks.get(threading.get_ident())


class _StreamRouter(io.TextIOBase):
    """Stands in for sys.stdout/sys.stderr: a cell's writes go to its session, others pass through."""

    def __init__(self, name: str, original) -> None:
        super().__init__()
        self.name = name
        self.original = original
        self.rpyc_ikernel_router = True

    def write(self, text) -> int:
        if not isinstance(text, str):
            raise TypeError("write() argument must be str, not %s" % type(text).__name__)
        state = _state()
        session = state.sinks.get(threading.get_ident())
        if session is not None:
            session.write_stream(self.name, text, block=True)
        elif state.last_session is not None:
            state.last_session.write_stream(self.name, text, block=False)
        elif self.original is not None:
            self.original.write(text)
        return len(text)

    def writable(self) -> bool:
        return True

    def flush(self) -> None:
        if _current_session() is None and self.original is not None:
            try:
                self.original.flush()
            except Exception:
                pass

    def isatty(self) -> bool:
        return False

    @property
    def encoding(self) -> str:
        return "utf-8"

    def fileno(self) -> int:
        if self.original is None:
            raise io.UnsupportedOperation("fileno")
        return self.original.fileno()


def _routed_input(prompt="") -> str:
    session = _current_session()
    if session is None:
        return _state().original_input(prompt)
    return session.request_input(str(prompt), password=False)


def _routed_getpass(prompt="Password: ", stream=None) -> str:
    session = _current_session()
    if session is None:
        import getpass

        return getpass._rpyc_ikernel_original(prompt, stream)
    return session.request_input(str(prompt), password=True)


def _interruptible_sleep(seconds) -> None:
    """time.sleep for cell threads on a plain server: wakes up when the cell is interrupted."""
    session = _current_session()
    cell = session.cell if session is not None else None
    original_sleep = _state().original_sleep
    if cell is None or cell.main_thread_mode or cell.thread_ident != threading.get_ident():
        return original_sleep(seconds)
    if seconds < 0:
        raise ValueError("sleep length must be non-negative")
    deadline = time.monotonic() + seconds
    with cell.waiting_inside_agent():
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            original_sleep(min(remaining, 0.05))  # short naps, no locks: safe to interrupt anywhere
            cell.check_interrupt()


def _install_hooks() -> None:
    """Route stdout/stderr/input through the sessions (once per board process)."""
    state = _state()
    if not getattr(sys.stdout, "rpyc_ikernel_router", False):
        state.original_stdout = sys.stdout
        sys.stdout = _StreamRouter("stdout", sys.stdout)
    if not getattr(sys.stderr, "rpyc_ikernel_router", False):
        state.original_stderr = sys.stderr
        sys.stderr = _StreamRouter("stderr", sys.stderr)
    builtins.input = _routed_input
    import getpass

    if not hasattr(getpass, "_rpyc_ikernel_original"):
        getpass._rpyc_ikernel_original = getpass.getpass
    getpass.getpass = _routed_getpass
    if sys.modules.get(EXECUTOR_MODULE) is None:
        time.sleep = _interruptible_sleep
    _install_finder()


# --------------------------------------------------------------------------- formatting values


def _plain_text(obj) -> str:
    text = repr(obj)
    if len(text) > 79 and isinstance(obj, (dict, list, tuple, set, frozenset)):
        try:
            text = pprint.pformat(obj, width=79, sort_dicts=False)
        except TypeError:  # Python 3.7 has no sort_dicts
            text = pprint.pformat(obj, width=79)
    return text


def _encode(mime: str, value):
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode("ascii")
    if mime == "application/json" or isinstance(value, str):
        return value
    return str(value)


def format_bundle(obj) -> tuple:
    """A Jupyter mime bundle (data, metadata) for obj, like IPython's display formatter."""
    data = {}
    metadata = {}
    if _is_figure(obj):
        png, size = figure_png(obj)
        data["image/png"] = _encode("image/png", png)
        if size:
            metadata["image/png"] = size
    elif not inspect.isclass(obj):
        method = _repr_method(obj, "_repr_mimebundle_")
        if method is not None:
            try:
                produced = method(include=None, exclude=None)
            except Exception:
                produced = None
            if isinstance(produced, tuple) and len(produced) == 2:
                produced, extra = produced
                metadata.update(extra or {})
            if isinstance(produced, dict):
                for mime, value in produced.items():
                    data[mime] = _encode(mime, value)
        for mime, name in MIME_METHODS:
            if mime in data:
                continue
            method = _repr_method(obj, name)
            if method is None:
                continue
            try:
                value = method()
            except Exception:
                continue
            if isinstance(value, tuple) and len(value) == 2:
                value, extra = value
                if extra:
                    metadata[mime] = extra
            if value is not None:
                data[mime] = _encode(mime, value)
    if "text/plain" not in data:
        data["text/plain"] = _plain_text(obj)
    return data, metadata


def _repr_method(obj, name: str):
    try:
        method = getattr(obj, name, None)
    except Exception:
        return None
    return method if callable(method) else None


# --------------------------------------------------------------------------- display helpers


class DisplayHandle:
    """What display(..., display_id=...) returns: lets board code update that output in place."""

    def __init__(self, display_id=None) -> None:
        self.display_id = display_id or uuid.uuid4().hex

    def display(self, obj, **kwargs) -> None:
        display(obj, display_id=self.display_id, **kwargs)

    def update(self, obj, **kwargs) -> None:
        display(obj, display_id=self.display_id, update=True, **kwargs)

    def __repr__(self) -> str:
        return "<DisplayHandle display_id=%s>" % self.display_id


def display(*objs, display_id=None, update=False, raw=False, metadata=None, clear=False, **kwargs):
    """Show objects in the running cell's output, like IPython.display.display."""
    session = _current_session() or _state().last_session
    if display_id is True:
        display_id = uuid.uuid4().hex
    if clear:
        clear_output(wait=True)
    for obj in objs:
        if raw:
            data, meta = dict(obj), {}
        else:
            data, meta = format_bundle(obj)
        if metadata:
            meta.update(metadata)
        transient = {"display_id": display_id} if display_id else {}
        if session is None:
            print(data.get("text/plain", ""))
        else:
            kind = "update_display" if update else "display"
            session.emit([kind, data, meta, transient])
    if display_id and not update:
        return DisplayHandle(display_id)
    return None


def update_display(obj, display_id, **kwargs) -> None:
    display(obj, display_id=display_id, update=True, **kwargs)


def clear_output(wait=False) -> None:
    session = _current_session() or _state().last_session
    if session is not None:
        session.emit(["clear_output", bool(wait)])


# --------------------------------------------------------------------------- matplotlib, inline

MPL_BACKEND_MODULE = "_rpyc_ikernel_mpl"
MPL_BACKEND = "module://" + MPL_BACKEND_MODULE


def _is_figure(obj) -> bool:
    """A matplotlib Figure, recognised without importing matplotlib."""
    try:
        classes = type(obj).__mro__
    except Exception:
        return False
    return any(c.__name__ == "Figure" and c.__module__ == "matplotlib.figure" for c in classes)


def figure_png(figure) -> tuple:
    """The figure as PNG bytes, and Jupyter image metadata (width/height) for 'retina' figures."""
    session = _current_session() or _state().last_session
    retina = getattr(session, "figure_format", "png") == "retina"
    dpi = figure.dpi * (2 if retina else 1)
    buffer = io.BytesIO()
    figure.canvas.print_figure(
        buffer,
        format="png",
        dpi=dpi,
        bbox_inches="tight",
        facecolor=figure.get_facecolor(),
        edgecolor=figure.get_edgecolor(),
    )
    png = buffer.getvalue()
    size = {}
    if retina and png[12:16] == b"IHDR":
        width = int.from_bytes(png[16:20], "big")
        height = int.from_bytes(png[20:24], "big")
        size = {"width": width // 2, "height": height // 2}
    return png, size


def show_figures(skip=None, **_ignored) -> None:
    """Show every open pyplot figure in the cell's output and close it (our backend's plt.show()).

    Runs at the end of each cell too, as IPython's inline backend does. Only for our backend: a user who
    picked another one (``matplotlib.use("Agg")`` to write files) keeps their figures.
    """
    pyplot = sys.modules.get("matplotlib.pyplot")
    if pyplot is None:
        return
    try:
        if pyplot.get_backend() != MPL_BACKEND:
            return
        from matplotlib._pylab_helpers import Gcf

        for manager in Gcf.get_all_fig_managers():
            figure = manager.canvas.figure
            if figure is not skip:
                display(figure)
        pyplot.close("all")
    except Exception:
        traceback.print_exc()


def _fill_mpl_backend(module) -> None:
    """Make `module` a matplotlib backend like matplotlib-inline's: Agg canvases, show() displays."""
    from matplotlib.backend_bases import FigureManagerBase
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    def new_figure_manager_given_figure(num, figure):
        return FigureManagerBase(FigureCanvasAgg(figure), num)

    def new_figure_manager(num, *args, **kwargs):
        figure_class = kwargs.pop("FigureClass", Figure)
        return new_figure_manager_given_figure(num, figure_class(*args, **kwargs))

    module.FigureCanvas = FigureCanvasAgg
    module.FigureManager = FigureManagerBase
    module.new_figure_manager = new_figure_manager
    module.new_figure_manager_given_figure = new_figure_manager_given_figure
    module.draw_if_interactive = lambda: None
    module.show = show_figures


def _configure_matplotlib(module) -> None:
    """Right after `import matplotlib`: inline figures, unless the user chose a backend (MPLBACKEND)."""
    if os.environ.get("MPLBACKEND") and not getattr(_state(), "force_inline", False):
        return
    try:
        module.rcParams["backend"] = MPL_BACKEND
    except Exception:
        pass


def use_inline_backend() -> None:
    """%matplotlib inline: switch to our backend now, even if matplotlib is already imported."""
    _state().force_inline = True
    matplotlib = sys.modules.get("matplotlib")
    if matplotlib is None:
        return
    pyplot = sys.modules.get("matplotlib.pyplot")
    if pyplot is not None:
        pyplot.switch_backend(MPL_BACKEND)
    else:
        matplotlib.use(MPL_BACKEND)


# --------------------------------------------------------------------------- import hooks


class _BuiltLoader(object):
    """Loads a module by calling a function of the agent that fills it in."""

    def __init__(self, fill) -> None:
        self.fill = fill

    def create_module(self, spec):
        return None

    def exec_module(self, module) -> None:
        self.fill(module)


class _ThenConfigure(object):
    """Wraps a real module's loader to run a function of ours right after the module loaded."""

    def __init__(self, loader, after) -> None:
        self._loader = loader
        self._after = after

    def create_module(self, spec):
        create = getattr(self._loader, "create_module", None)
        return create(spec) if create is not None else None

    def exec_module(self, module) -> None:
        self._loader.exec_module(module)
        self._after(module)

    def __getattr__(self, name):
        return getattr(self._loader, name)


class AgentFinder(object):
    """A meta path finder for what board code imports from us.

    - the inline matplotlib backend module; and `import matplotlib` selects it (without setting
      MPLBACKEND in the environment, which child processes would inherit and fail on);
    - `IPython` / `IPython.display` with display(), HTML, Image, ... when the board has no IPython.
    """

    rpyc_ikernel_finder = True

    def __init__(self) -> None:
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

    def find_spec(self, name, path=None, target=None):
        if name == MPL_BACKEND_MODULE:
            return importlib.util.spec_from_loader(name, _BuiltLoader(_fill_mpl_backend))
        if name == "matplotlib":
            spec = self._find_elsewhere(name, path, target)
            if spec is not None and spec.loader is not None:
                spec.loader = _ThenConfigure(spec.loader, _configure_matplotlib)
            return spec
        if name == "IPython":
            if self._find_elsewhere(name, path, target) is not None:
                return None  # the board's real IPython
            return importlib.util.spec_from_loader(name, _BuiltLoader(_fill_ipython_shim), is_package=True)
        if name == "IPython.display" and getattr(sys.modules.get("IPython"), "rpyc_ikernel_shim", False):
            return importlib.util.spec_from_loader(name, _BuiltLoader(_fill_display_shim))
        if name in IPYTHON_DISPLAY_MODULES:
            spec = self._find_elsewhere(name, path, target)
            if spec is not None and spec.loader is not None:
                spec.loader = _ThenConfigure(spec.loader, _route_ipython_display)
            return spec
        return None


def _install_finder() -> None:
    """Put (this version's) AgentFinder first on sys.meta_path, replacing one of an older agent."""
    sys.meta_path[:] = [f for f in sys.meta_path if not getattr(f, "rpyc_ikernel_finder", False)]
    sys.meta_path.insert(0, AgentFinder())
    for name in IPYTHON_DISPLAY_MODULES + ("IPython.display", "IPython"):
        module = sys.modules.get(name)
        if module is not None and not getattr(module, "rpyc_ikernel_shim", False):
            _route_ipython_display(module)


# Where IPython (7 and newer) defines display(); without a running IPython shell it only prints a repr.
IPYTHON_DISPLAY_MODULES = ("IPython.core.display_functions", "IPython.core.display")


def _route_ipython_display(module) -> None:
    """The board's real IPython has no shell in this process: its display() & co. use the cell's."""
    for name, function in (
        ("display", display),
        ("update_display", update_display),
        ("clear_output", clear_output),
    ):
        if hasattr(module, name):
            setattr(module, name, function)


# --------------------------------------------------------------------------- IPython.display, on the board


class _DisplayObject(object):
    """Base of HTML, Markdown, ...: data given directly or read from a file."""

    binary = False

    def __init__(self, data=None, url=None, filename=None, metadata=None) -> None:
        if filename is None and isinstance(data, str) and _looks_like_path(data):
            filename, data = data, None
        if filename is not None:
            with open(filename, "rb" if self.binary else "r") as handle:
                data = handle.read()
        self.data = data
        self.url = url
        self.metadata = metadata

    def __repr__(self) -> str:
        return "<IPython.core.display.%s object>" % type(self).__name__


def _looks_like_path(text: str) -> bool:
    return len(text) < 4096 and "\n" not in text and os.path.isfile(os.path.expanduser(text))


class HTML(_DisplayObject):
    def _repr_html_(self):
        return self.data


class Markdown(_DisplayObject):
    def _repr_markdown_(self):
        return self.data


class Latex(_DisplayObject):
    def _repr_latex_(self):
        return self.data


class SVG(_DisplayObject):
    def _repr_svg_(self):
        return self.data


class Javascript(_DisplayObject):
    def _repr_javascript_(self):
        return self.data


class JSON(_DisplayObject):
    def __init__(self, data=None, url=None, filename=None, metadata=None, **kwargs) -> None:
        _DisplayObject.__init__(self, data, url, filename, metadata)
        if isinstance(self.data, str) and filename is not None:
            self.data = json.loads(self.data)

    def _repr_json_(self):
        return self.data


class Image(_DisplayObject):
    """PNG, JPEG or GIF bytes (or a file) shown as an image; a url alone shows as <img>."""

    binary = True

    def __init__(self, data=None, url=None, filename=None, format=None, width=None, height=None, **kwargs):
        if url is not None and data is None and filename is None:
            _DisplayObject.__init__(self, None, url=url)
        else:
            _DisplayObject.__init__(self, data, filename=filename)
        self.format = format
        self.width = width
        self.height = height

    def _mime(self) -> str:
        data = self.data or b""
        if self.format:
            return "image/" + {"jpg": "jpeg"}.get(self.format.lower(), self.format.lower())
        if data[:4] == b"\x89PNG":
            return "image/png"
        if data[:3] == b"GIF":
            return "image/gif"
        return "image/jpeg"

    def _repr_mimebundle_(self, include=None, exclude=None):
        size = {}
        if self.width:
            size["width"] = self.width
        if self.height:
            size["height"] = self.height
        if self.data is None:
            extra = "".join(' %s="%s"' % item for item in sorted(size.items()))
            return {"text/html": '<img src="%s"%s/>' % (self.url, extra)}
        mime = self._mime()
        return {mime: bytes(self.data)}, ({mime: size} if size else {})


def _fill_display_shim(module) -> None:
    for name in (
        "display",
        "update_display",
        "clear_output",
        "DisplayHandle",
        "HTML",
        "Markdown",
        "Latex",
        "SVG",
        "Javascript",
        "JSON",
        "Image",
    ):
        setattr(module, name, globals()[name])


def _fill_ipython_shim(module) -> None:
    """A stand-in `IPython` package: only `IPython.display`; get_ipython() says no IPython runs."""
    module.rpyc_ikernel_shim = True
    module.__path__ = []
    module.__version__ = "0.0.0"
    module.version_info = (0, 0, 0, "rpyc_ikernel")
    module.get_ipython = lambda: None


# --------------------------------------------------------------------------- running a cell


def _last_statement_silenced(code: str) -> bool:
    """IPython hides the result when the cell's last code line ends with ';'."""
    for line in reversed(code.splitlines()):
        stripped = line.split("#", 1)[0].strip() if "#" in line else line.strip()
        if stripped:
            return stripped.endswith(";")
    return False


def _format_error(exc_type, exc, tb) -> dict:
    """ename/evalue/traceback with the agent's own frames left out, so it points at the user's lines."""
    if isinstance(exc, UsageError):
        lines = ["UsageError: %s" % exc]
    else:
        report = traceback.TracebackException(exc_type, exc, tb)
        _drop_agent_frames(report, _format_error.__code__.co_filename)
        lines = list(report.format())
    return {
        "status": "error",
        "ename": exc_type.__name__,
        "evalue": str(exc),
        "traceback": [line.rstrip("\n") for line in lines],
    }


def _drop_agent_frames(report, agent_file: str) -> None:
    """Remove the agent's frames from a TracebackException and the exceptions chained to it."""
    pending = [report]
    seen = set()
    while pending:
        item = pending.pop()
        if item is None or id(item) in seen:
            continue
        seen.add(id(item))
        kept = [frame for frame in item.stack if frame.filename != agent_file]
        item.stack = traceback.StackSummary.from_list(kept)
        pending.extend([item.__cause__, item.__context__])


class CellRun:
    """One cell's code and its progress; a job for the main-thread executor or a worker thread."""

    def __init__(self, session, code: str, filename: str, allow_stdin: bool, silent: bool) -> None:
        self.session = session
        self.code = code
        self.filename = filename
        self.allow_stdin = allow_stdin
        self.silent = silent
        self.interruptible = False  # True only while user code runs
        self.interrupt_event = threading.Event()
        self.main_thread_mode = False
        self.thread_ident = None
        self.waiting = 0  # > 0 while the cell waits inside the agent (sleep, input(), a shell command)

    @contextlib.contextmanager
    def waiting_inside_agent(self):
        """Mark a wait that checks for interrupts itself (check_interrupt), so Session.interrupt sets a
        flag instead of a signal or an injected exception, which could land inside a lock."""
        self.waiting += 1
        try:
            self.check_interrupt()
            yield self
        finally:
            self.waiting -= 1

    @contextlib.contextmanager
    def shielded(self):
        """Agent code run on the cell's own thread that holds locks (print, display): an interrupt
        arriving meanwhile is only flagged, then raised here once the locks are released. Raised
        inside a lock it would leave the session locked and the board deaf to the kernel."""
        self.waiting += 1
        try:
            yield self
        finally:
            self.waiting -= 1
        if self.interruptible:
            self.check_interrupt()

    def check_interrupt(self) -> None:
        """Raise KeyboardInterrupt once for an interrupt that arrived while the cell was waiting."""
        if self.interrupt_event.is_set():
            self.interrupt_event.clear()
            raise KeyboardInterrupt()

    def __call__(self) -> None:
        self.thread_ident = threading.get_ident()
        reply = None
        state = _state()
        state.sinks[self.thread_ident] = self.session
        try:
            reply = self._execute()
        except BaseException as exc:  # an interrupt that landed outside user code
            reply = _format_error(type(exc), exc, None)
        finally:
            self.interruptible = False
            state.sinks.pop(self.thread_ident, None)
            self.session.finish(self, reply)

    def _execute(self) -> dict:
        ns = self.session.namespace
        linecache.cache[self.filename] = (
            len(self.code),
            None,
            self.code.splitlines(True),
            self.filename,
        )
        try:
            tree = ast.parse(self.code, self.filename, "exec")
            last = None
            if tree.body and isinstance(tree.body[-1], ast.Expr):
                last = ast.Expression(tree.body.pop().value)
            body = compile(tree, self.filename, "exec", dont_inherit=True)
            tail = compile(last, self.filename, "eval", dont_inherit=True) if last is not None else None
        except (SyntaxError, ValueError, OverflowError) as exc:
            return _format_error(type(exc), exc, None)
        value = None
        try:
            self.interruptible = True
            self.check_interrupt()
            exec(body, ns)
            if tail is not None:
                value = eval(tail, ns)
            self.interruptible = False
        except BaseException:
            self.interruptible = False
            exc_type, exc, tb = sys.exc_info()
            show_figures()  # like IPython's inline backend, figures show even when the cell fails
            return _format_error(exc_type, exc, tb)
        reply = {"status": "ok"}
        shown = value is not None and not _last_statement_silenced(self.code)
        show_figures(skip=value if shown else None)
        if shown:
            ns["_"] = value
            data, metadata = format_bundle(value)
            reply["result"] = {"data": data, "metadata": metadata}
        return reply


class Session:
    """One kernel's namespace and output queue on the board; outlives a dropped connection."""

    def __init__(self, session_id: str) -> None:
        self.session_id = session_id
        self.shell = BoardShell(self)
        self.namespace = {
            "__name__": "__main__",
            "__builtins__": builtins,
            "display": display,
            "update_display": update_display,
            "clear_output": clear_output,
            "get_ipython": self.shell.get_ipython,
        }
        self.hidden_names = frozenset(self.namespace)  # what %who and %reset leave alone
        self.figure_format = "png"  # or "retina" (%config InlineBackend.figure_format)
        self.cell = None
        self._cond = threading.Condition()
        self._events = []
        self._pending = 0
        self._first_pending = None
        self._reply = None
        self._input_answer = None
        self._input_prompt = None
        self._input_waiting = False
        self.requests = 0  # calls of run/poll: how many round trips cells cost
        self.cell_id = None  # the kernel's id of the current or last cell
        self._seq = 0  # numbers the answers to run/poll
        self._unacked = None  # (seq, answer) until the kernel acknowledges it
        self._polls = 0  # numbers the run/poll calls: only the newest may take output

    # ------------------------------------------------------------ output from the cell
    def _own_cell(self):
        """The running cell if the caller is its thread (then locked work must be shielded)."""
        cell = self.cell
        if cell is not None and cell.thread_ident == threading.get_ident():
            return cell
        return None

    def write_stream(self, name: str, text: str, block: bool) -> None:
        if not text:
            return
        cell = self._own_cell()
        if cell is None:
            return self._write_stream(name, text, block)
        with cell.shielded():
            self._write_stream(name, text, block)

    def _write_stream(self, name: str, text: str, block: bool) -> None:
        with self._cond:
            if block:
                while self._pending > MAX_PENDING and self.cell is not None:
                    self._cond.wait(0.1)
            elif self._pending > MAX_ORPHAN:
                return
            last = self._events[-1] if self._events else None
            if last is not None and last[0] == "stream" and last[1] == name:
                last[2].append(text)
            else:
                self._events.append(["stream", name, [text]])
            self._added(len(text))

    def emit(self, event: list) -> None:
        cell = self._own_cell()
        if cell is None:
            return self._emit(event)
        with cell.shielded():
            self._emit(event)

    def _emit(self, event: list) -> None:
        with self._cond:
            self._events.append(event)
            self._added(FLUSH_SIZE // 4)

    def _added(self, size: int) -> None:
        if self._first_pending is None:
            self._first_pending = time.monotonic()
        self._pending += size
        if self._pending >= FLUSH_SIZE or len(self._events) == 1:
            self._cond.notify_all()

    # ------------------------------------------------------------ the kernel's calls
    def run(
        self,
        code: str,
        filename: str,
        wait: float,
        allow_stdin: bool = False,
        silent: bool = False,
        cell_id: str = None,
    ) -> str:
        """Start a cell, then wait up to `wait` seconds for it: a quick cell costs one round trip.

        A repeated cell_id means the kernel lost our answer to this very call: the cell is not started
        twice, the unacknowledged answer is sent again instead.
        """
        self.requests += 1
        with self._cond:
            if cell_id is not None and cell_id == self.cell_id:
                return self._poll(wait, None)
            if self.cell is not None:
                return json.dumps({"busy": True, "events": [], "done": False})
            self._reply = None
            self._unacked = None
            self.cell_id = cell_id
            cell = CellRun(self, code, filename, allow_stdin, silent)
            self.cell = cell
        _state().last_session = self
        executor = sys.modules.get(EXECUTOR_MODULE)
        if executor is not None:
            cell.main_thread_mode = True
            executor.submit(cell)
        else:
            threading.Thread(target=cell, name="rpyc_ikernel cell", daemon=True).start()
        with self._cond:
            return self._poll(wait, None)

    def poll(self, wait: float, ack: int = None) -> str:
        """Wait up to `wait` seconds for output worth sending or the cell's end; return them as JSON.

        `ack` is the seq of the last answer the kernel received; if it is not our last answer, that
        answer was lost with a dropped connection and is sent again, so no output is ever lost.
        """
        self.requests += 1
        with self._cond:
            return self._poll(wait, ack)

    def _poll(self, wait: float, ack) -> str:
        if self._unacked is not None and ack != self._unacked[0]:
            return self._unacked[1]
        self._polls += 1
        mine = self._polls
        self._cond.notify_all()  # an older poll still waiting lost its link: it gives way to this one
        deadline = time.monotonic() + wait
        while True:
            if self._reply is not None or self._input_waiting or self._polls != mine:
                break
            now = time.monotonic()
            if self._events:
                due = self._first_pending + FLUSH_DELAY
                if now >= due or self._pending >= FLUSH_SIZE:
                    break
                timeout = min(due, deadline) - now
            else:
                timeout = deadline - now
            if timeout <= 0:
                break
            self._cond.wait(timeout)
        running = self.cell is not None
        if self._polls != mine:  # a newer poll takes the output; this answer goes to a dead link
            return json.dumps({"events": [], "done": False, "seq": self._seq, "running": running})
        events = self._take_events()
        done = self._reply is not None
        self._seq += 1
        message = {"events": events, "done": done, "seq": self._seq, "running": running}
        if done:
            message["reply"] = self._reply
            self._reply = None
        elif self._input_waiting and self._input_prompt is not None:
            message["input"] = self._input_prompt
            self._input_prompt = None
        self._cond.notify_all()
        text = json.dumps(message)
        self._unacked = (self._seq, text)
        return text

    def _take_events(self) -> list:
        events = self._events
        self._events = []
        self._pending = 0
        self._first_pending = None
        for event in events:
            if event[0] == "stream":
                event[2] = "".join(event[2])
        return events

    def finish(self, cell: CellRun, reply) -> None:
        with self._cond:
            if self.cell is cell:
                self.cell = None
            self._reply = reply or {"status": "ok"}
            self._input_waiting = False
            self._cond.notify_all()

    def interrupt(self, cell_id: str = None) -> bool:
        """Stop the running cell with KeyboardInterrupt; True when a cell was running.

        With cell_id, only that cell: an interrupt that arrives late never hits the next cell.

        A cell that waits inside the agent (input(), a shell command, sleep on a plain server) or has
        not started its user code yet gets a flag it checks itself. Otherwise our server signals its
        main thread (stops sleeps and blocking I/O too); on a plain server the exception is injected
        into the cell's thread (stops Python code; a blocking C call ends first).
        """
        cell = self.cell
        if cell is None or (cell_id is not None and cell_id != self.cell_id):
            return False
        if cell.waiting or not cell.interruptible:
            cell.interrupt_event.set()
            with self._cond:
                self._cond.notify_all()
            return True
        executor = sys.modules.get(EXECUTOR_MODULE)
        if cell.main_thread_mode and executor is not None:
            if not executor.interrupt(cell):
                cell.interrupt_event.set()
        elif cell.thread_ident is not None:
            _raise_in_thread(cell.thread_ident, KeyboardInterrupt)
        return True

    # ------------------------------------------------------------ input()
    def request_input(self, prompt: str, password: bool) -> str:
        """Ask the user through the kernel's stdin channel; wait for the answer (interruptible)."""
        cell = self.cell
        if cell is None or not cell.allow_stdin:
            what = "getpass()" if password else "input()"
            raise StdinNotImplementedError(
                "%s was called, but this frontend does not support input requests (allow_stdin is off)" % what
            )
        with cell.waiting_inside_agent(), self._cond:
            self._input_answer = None
            self._input_prompt = {"prompt": prompt, "password": password}
            self._input_waiting = True
            self._cond.notify_all()
            try:
                while self._input_answer is None:
                    cell.check_interrupt()
                    self._cond.wait(0.05)
            finally:
                self._input_waiting = False
                self._input_prompt = None
            answer = self._input_answer
            self._input_answer = None
        if answer.get("eof"):
            raise EOFError("EOF when reading a line")
        return answer.get("value", "")

    def provide_input(self, value: str, eof: bool = False) -> None:
        with self._cond:
            self._input_answer = {"value": value, "eof": eof}
            self._cond.notify_all()

    # ------------------------------------------------------------ completion and inspection
    def complete(self, code: str, cursor_pos: int) -> str:
        return json.dumps(complete(self.namespace, code, cursor_pos))

    def inspect(self, code: str, cursor_pos: int, detail_level: int = 0) -> str:
        return json.dumps(inspect_object(self.namespace, code, cursor_pos, detail_level))

    def evaluate(self, expressions: str) -> str:
        """user_expressions of an execute_request: each evaluated in the namespace, as bundles."""
        results = {}
        for name, source in json.loads(expressions).items():
            try:
                data, metadata = format_bundle(eval(source, self.namespace))
                results[name] = {"status": "ok", "data": data, "metadata": metadata}
            except Exception:
                exc_type, exc, tb = sys.exc_info()
                results[name] = _format_error(exc_type, exc, None)
        return json.dumps(results)


def _raise_in_thread(thread_ident: int, exc_type) -> bool:
    """Raise exc_type asynchronously in another thread (CPython only; a best effort elsewhere)."""
    try:
        import ctypes
    except ImportError:
        return False
    set_async = ctypes.pythonapi.PyThreadState_SetAsyncExc
    count = set_async(ctypes.c_ulong(thread_ident), ctypes.py_object(exc_type))
    if count > 1:
        set_async(ctypes.c_ulong(thread_ident), None)
        return False
    return count == 1


# --------------------------------------------------------------------------- completion


_NAME_CHAIN = re.compile(r"[A-Za-z_][\w]*(?:\.[A-Za-z_]\w*)*\.?$")


def _kind(obj) -> str:
    if inspect.ismodule(obj):
        return "module"
    if inspect.isclass(obj):
        return "class"
    if inspect.isroutine(obj):
        return "function"
    return "instance"


def _attribute_matches(namespace: dict, word: str) -> list:
    """`obj.pre` -> obj's attributes starting with "pre", found with dir() only.

    rlcompleter evaluates the expression and, before Python 3.10, reads every matching attribute:
    a property of a board object may read a sensor. Here nothing is called but the parent's lookup.
    """
    parent_name, _, prefix = word.rpartition(".")
    parent = _resolve(namespace, parent_name)
    if parent is _MISSING:
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


_MAGIC_PREFIX = re.compile(r"^\s*(%%?)([A-Za-z_]\w*)?$")


def _complete_magic(line_before: str, cursor_pos: int):
    """`%ti` completes to %time, %timeit; `%%wr` to %%writefile (the board's magics)."""
    match = _MAGIC_PREFIX.match(line_before)
    if not match:
        return None
    marks, partial = match.group(1), match.group(2) or ""
    names = BoardShell.list_cell_magics() if marks == "%%" else BoardShell.list_line_magics()
    matches = [marks + name for name in names if name.startswith(partial)]
    start = cursor_pos - len(marks) - len(partial)
    return {
        "matches": matches,
        "cursor_start": start,
        "cursor_end": cursor_pos,
        "metadata": {
            "_jupyter_types_experimental": [
                {"start": start, "end": cursor_pos, "text": m, "type": "magic"} for m in matches
            ]
        },
        "status": "ok",
    }


def complete(namespace: dict, code: str, cursor_pos: int) -> dict:
    """Names and attributes from the board namespace that complete the word before the cursor."""
    before = code[:cursor_pos]
    magic = _complete_magic(before[before.rfind("\n") + 1 :], cursor_pos)
    if magic is not None:
        return magic
    match = _NAME_CHAIN.search(before)
    word = match.group(0) if match else ""
    # Imported on first use: rlcompleter loads readline, ~0.8 MB of a small board's memory.
    import rlcompleter

    try:
        namespace = dict(namespace)  # a running cell may change it meanwhile
    except RuntimeError:
        namespace = {}
    completer = rlcompleter.Completer(namespace)
    matches = []
    if "." in word:
        matches = _attribute_matches(namespace, word)
    elif word:
        state = 0
        while state < 1000:
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
            state += 1
    if "." not in word:
        hidden = word.startswith("_")
        matches = [m for m in matches if hidden or not m.startswith("_")]
    types_ = []
    parents = {}
    for candidate in matches[:MAX_TYPED_MATCHES]:
        kind = "keyword" if keyword.iskeyword(candidate) else _match_kind(namespace, candidate, parents)
        types_.append(
            {
                "start": cursor_pos - len(word),
                "end": cursor_pos,
                "text": candidate,
                "type": kind,
            }
        )
    return {
        "matches": matches,
        "cursor_start": cursor_pos - len(word),
        "cursor_end": cursor_pos,
        "metadata": {"_jupyter_types_experimental": types_},
        "status": "ok",
    }


_MISSING = object()
MAX_TYPED_MATCHES = 200  # beyond this, completions come without types (each costs an attribute lookup)


def _match_kind(namespace: dict, dotted: str, parents: dict) -> str:
    """The Jupyter type of a completion; a property is named, not run (it may read hardware)."""
    parent_name, _, attribute = dotted.rpartition(".")
    if not parent_name:
        return _kind(_resolve(namespace, dotted))
    if parent_name not in parents:
        parents[parent_name] = _resolve(namespace, parent_name)
    parent = parents[parent_name]
    if parent is _MISSING:
        return "instance"
    try:
        static = inspect.getattr_static(parent, attribute)
    except AttributeError:
        static = _MISSING
    if isinstance(static, property):
        return "property"
    try:
        return _kind(getattr(parent, attribute))
    except Exception:
        return "instance"


def _resolve(namespace: dict, dotted: str):
    """Look up a dotted name without evaluating arbitrary code (attributes only)."""
    parts = dotted.split(".")
    if parts[0] in namespace:
        obj = namespace[parts[0]]
    elif hasattr(builtins, parts[0]):
        obj = getattr(builtins, parts[0])
    else:
        return _MISSING
    for part in parts[1:]:
        try:
            obj = getattr(obj, part)
        except Exception:
            return _MISSING
    return obj


# --------------------------------------------------------------------------- inspection


_WORD = re.compile(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*")


def name_at_cursor(code: str, cursor_pos: int) -> str:
    """The dotted name under the cursor, or the function whose call the cursor is in."""
    line_start = code.rfind("\n", 0, cursor_pos) + 1
    line_end = code.find("\n", cursor_pos)
    line = code[line_start : line_end if line_end >= 0 else len(code)]
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
                match = re.search(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*$", line[:index].rstrip())
                if match:
                    return match.group(0)
            else:
                depth -= 1
    return ""


def _defined_in_a_cell(obj) -> bool:
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


def describe(obj, name: str, detail_level: int) -> str:
    """An IPython-like help text: type, signature, docstring, file and (detail 1) source."""
    fields = []
    try:
        signature = str(inspect.signature(obj)) if callable(obj) else None
    except (TypeError, ValueError):
        signature = None
    if signature is not None:
        fields.append(("Init signature" if inspect.isclass(obj) else "Signature", name + signature))
    fields.append(("Type", type(obj).__name__))
    if not (inspect.isroutine(obj) or inspect.isclass(obj) or inspect.ismodule(obj)):
        text = _plain_text(obj)
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


def inspect_object(namespace: dict, code: str, cursor_pos: int, detail_level: int) -> dict:
    name = name_at_cursor(code, cursor_pos)
    obj = _resolve(namespace, name) if name else _MISSING
    if obj is _MISSING:
        return {"status": "ok", "found": False, "data": {}, "metadata": {}}
    return {
        "status": "ok",
        "found": True,
        "data": {"text/plain": describe(obj, name, detail_level)},
        "metadata": {},
    }


# --------------------------------------------------------------------------- get_ipython(): ! and %magics

# The kernel rewrites `!cmd`, `x = !cmd`, `%magic args` and `%%magic` cells with IPython's own input
# transformer into calls like get_ipython().system('cmd'); this is the object those calls reach.

SHELL_ALIASES = {
    "ls": "ls",
    "ll": "ls -F -l",
    "cat": "cat",
    "cp": "cp",
    "mv": "mv",
    "rm": "rm",
    "rmdir": "rmdir",
    "mkdir": "mkdir",
}
RAW_CELL_MAGICS = {
    "html": "text/html",
    "markdown": "text/markdown",
    "latex": "text/latex",
    "svg": "image/svg+xml",
    "javascript": "application/javascript",
    "js": "application/javascript",
}


class ShellOutput(list):
    """What `x = !cmd` gives: the output's lines, with IPython's .s / .n / .l shortcuts."""

    @property
    def s(self) -> str:
        return " ".join(self)

    @property
    def n(self) -> str:
        return "\n".join(self)

    @property
    def l(self) -> list:  # noqa: E743 - IPython's name
        return list(self)


def format_time(seconds: float, precision: int = 3) -> str:
    """A duration as IPython's %time/%timeit print it: '1.23 ms', '45.6 µs', '1min 3s'."""
    if seconds >= 60.0:
        parts = []
        left = seconds
        for suffix, length in (("d", 86400), ("h", 3600), ("min", 60), ("s", 1)):
            value = int(left / length)
            if value > 0:
                left = left % length
                parts.append("%d%s" % (value, suffix))
            if left < 1:
                break
        return " ".join(parts)
    units = ("s", "ms", "\xb5s", "ns")
    order = min(-int(math.floor(math.log10(seconds)) // 3), 3) if seconds > 0 else 3
    order = max(order, 0)
    return "%.*g %s" % (precision, seconds * 1000.0**order, units[order])


def _cpu_times() -> tuple:
    """(user, system) CPU seconds of this process, at the best resolution the board offers."""
    try:
        import resource

        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime, usage.ru_stime
    except ImportError:
        times = os.times()
        return times[0], times[1]


def _split_last_expression(source: str, filename: str) -> tuple:
    """Compile source as statements plus its last expression (whose value is returned), like a cell."""
    tree = ast.parse(source, filename, "exec")
    last = None
    if tree.body and isinstance(tree.body[-1], ast.Expr):
        last = ast.Expression(tree.body.pop().value)
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    body = compile(tree, filename, "exec", dont_inherit=True)
    tail = compile(last, filename, "eval", dont_inherit=True) if last is not None else None
    return body, tail


class BoardShell(object):
    """`get_ipython()` on the board: the shell commands and %magics a notebook user expects.

    Runs against the session's namespace on the board. Magics that only make sense in the kernel
    process, or that this small shim does not have, fail with one UsageError line.
    """

    def __init__(self, session) -> None:
        self.session = session
        self._previous_dir = None

    def get_ipython(self):
        """The board's stand-in for IPython's shell (what `!` and `%` lines call)."""
        return self

    @property
    def user_ns(self) -> dict:
        return self.session.namespace

    # ------------------------------------------------------------ shell commands
    def var_expand(self, command: str) -> str:
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

    def system(self, command: str) -> None:
        """`!cmd`: run it in the board's shell, its output streamed into the cell; sets _exit_code."""
        self.user_ns["_exit_code"] = self._run(self.var_expand(command), shell=True)

    def getoutput(self, command: str, split: bool = True):
        """`x = !cmd` / `!!cmd`: the command's output (stdout and stderr) as a list of lines."""
        chunks = []
        self.user_ns["_exit_code"] = self._run(self.var_expand(command), shell=True, sink=chunks.append)
        text = "".join(chunks)
        return ShellOutput(text.splitlines()) if split else text

    def _run(self, command, shell: bool, sink=None) -> int:
        """Run a command on the board; output goes to sink (default: the cell). Interruptible."""
        import subprocess

        session = self.session
        cell = session.cell
        if cell is not None and cell.thread_ident != threading.get_ident():
            cell = None  # a thread of the user's: the cell's interrupt is not for it
        if sink is None:

            def sink(text):
                session.write_stream("stdout", text, block=True)

        options = {"start_new_session": True} if os.name == "posix" else {}
        process = subprocess.Popen(
            command,
            shell=shell,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            **options,
        )
        reader = threading.Thread(target=_pump, args=(process.stdout, sink), daemon=True)
        reader.start()
        waiting = cell.waiting_inside_agent() if cell is not None else contextlib.ExitStack()
        try:
            with waiting:
                exited_at = None
                while True:
                    if cell is not None:
                        cell.check_interrupt()
                    if reader.is_alive():
                        reader.join(0.05)
                    else:
                        try:
                            process.wait(0.05)
                        except subprocess.TimeoutExpired:
                            pass
                    code = process.poll()
                    if code is None:
                        continue
                    # a background job (`cmd &`) may keep the pipe open: do not wait for it long
                    exited_at = exited_at or time.monotonic()
                    if not reader.is_alive() or time.monotonic() - exited_at > 0.5:
                        return code
        except BaseException:
            _stop_process(process)
            raise

    # ------------------------------------------------------------ magics
    def run_line_magic(self, name: str, line: str, _stack_depth: int = 1):
        if name in SHELL_ALIASES:
            return self.system(("%s %s" % (SHELL_ALIASES[name], line)).strip())
        method = getattr(self, "line_" + name, None)
        if method is None:
            raise UsageError(self._not_here("%" + name))
        return method(line)

    def run_cell_magic(self, name: str, line: str, cell: str):
        if name in RAW_CELL_MAGICS:
            display({RAW_CELL_MAGICS[name]: cell, "text/plain": "<%s>" % name}, raw=True)
            return None
        method = getattr(self, "cell_" + name, None)
        if method is None:
            raise UsageError(self._not_here("%%" + name))
        return method(line, cell)

    def magic(self, text: str):
        """IPython's old get_ipython().magic('name args')."""
        name, _, line = text.lstrip("%").partition(" ")
        return self.run_line_magic(name, line)

    @classmethod
    def list_line_magics(cls) -> list:
        names = [n[5:] for n in dir(cls) if n.startswith("line_")] + list(SHELL_ALIASES)
        return sorted(set(names))

    @classmethod
    def list_cell_magics(cls) -> list:
        return sorted(set([n[5:] for n in dir(cls) if n.startswith("cell_")] + list(RAW_CELL_MAGICS)))

    def _not_here(self, magic: str) -> str:
        return (
            "%s is not available on the board (%%lsmagic lists what is);"
            " a '# exec(...)' line runs Python in the kernel instead" % magic
        )

    def line_lsmagic(self, line: str) -> None:
        """List the magics the board supports."""
        print("Line magics (run on the board): " + " ".join("%" + n for n in self.list_line_magics()))
        print("Cell magics (run on the board): " + " ".join("%%" + n for n in self.list_cell_magics()))
        print("!command runs in the board's shell; x = !command keeps its output lines.")

    def line_time(self, line: str, cell: str = None):
        """Time one run of a statement (or the cell), print CPU and wall time, return its value."""
        source = line if cell is None else cell
        if not source.strip():
            raise UsageError("%time needs code to time, e.g. %time sum(range(10**6))")
        body, tail = _split_last_expression(source.strip() if cell is None else source, "<timed exec>")
        cpu_before = _cpu_times()
        wall_before = time.perf_counter()
        exec(body, self.user_ns)
        value = eval(tail, self.user_ns) if tail is not None else None
        wall = time.perf_counter() - wall_before
        cpu_after = _cpu_times()
        user = cpu_after[0] - cpu_before[0]
        system = cpu_after[1] - cpu_before[1]
        print(
            "CPU times: user %s, sys: %s, total: %s"
            % (format_time(user), format_time(system), format_time(user + system))
        )
        print("Wall time: %s" % format_time(wall))
        return value

    def cell_time(self, line: str, cell: str):
        return self.line_time(line, cell)

    def line_timeit(self, line: str, cell: str = None):
        """Time a statement over many loops: '%timeit [-n N] [-r R] [-q] [-o] statement'."""
        import timeit

        options = {"n": None, "r": 7, "q": False, "o": False}
        rest = line.strip()
        while True:
            match = re.match(r"-([nr])\s*(\d+)\s*|-([qo])(?:\s+|$)", rest)
            if not match:
                break
            if match.group(1):
                options[match.group(1)] = int(match.group(2))
            else:
                options[match.group(3)] = True
            rest = rest[match.end() :]
        setup, statement = ("pass", rest) if cell is None else (rest or "pass", cell)
        if not statement.strip():
            raise UsageError("%timeit needs a statement, e.g. %timeit sum(range(100))")
        timer = timeit.Timer(statement, setup, timer=time.perf_counter, globals=self.user_ns)
        number = options["n"]
        if number is None:
            for exponent in range(10):
                number = 10**exponent
                if timer.timeit(number) >= 0.2:
                    break
        repeat = max(1, options["r"])
        per_loop = [total / number for total in timer.repeat(repeat, number)]
        mean = sum(per_loop) / len(per_loop)
        spread = math.sqrt(sum((x - mean) ** 2 for x in per_loop) / len(per_loop))
        if not options["q"]:
            print(
                "%s \xb1 %s per loop (mean \xb1 std. dev. of %d run%s, %s loop%s each)"
                % (
                    format_time(mean),
                    format_time(spread),
                    repeat,
                    "" if repeat == 1 else "s",
                    "{:,}".format(number),
                    "" if number == 1 else "s",
                )
            )
        if options["o"]:
            return {"loops": number, "repeat": repeat, "timings": per_loop, "average": mean, "stdev": spread}
        return None

    def cell_timeit(self, line: str, cell: str):
        return self.line_timeit(line, cell)

    def _user_names(self, type_names=()) -> list:
        hidden = self.session.hidden_names
        names = []
        for name, value in list(self.user_ns.items()):
            if name.startswith("_") or name in hidden:
                continue
            if type_names and type(value).__name__ not in type_names:
                continue
            names.append(name)
        return sorted(names)

    def line_who(self, line: str) -> None:
        """Print the names you defined on the board (optionally only of some types: %who int str)."""
        names = self._user_names(line.split())
        print("\t".join(names) if names else "Interactive namespace is empty.")

    def line_who_ls(self, line: str) -> list:
        return self._user_names(line.split())

    def line_whos(self, line: str) -> None:
        """A table of your variables on the board: name, type, value."""
        names = self._user_names(line.split())
        if not names:
            print("Interactive namespace is empty.")
            return
        rows = []
        for name in names:
            value = self.user_ns[name]
            text = _plain_text(value).replace("\n", " ")
            rows.append((name, type(value).__name__, text if len(text) <= 60 else text[:57] + "..."))
        name_width = max(len("Variable"), max(len(r[0]) for r in rows)) + 3
        type_width = max(len("Type"), max(len(r[1]) for r in rows)) + 3
        print("Variable".ljust(name_width) + "Type".ljust(type_width) + "Data/Info")
        print("-" * (name_width + type_width + 9))
        for name, type_name, text in rows:
            print(name.ljust(name_width) + type_name.ljust(type_width) + text)

    def line_reset(self, line: str) -> None:
        """Delete your variables on the board ('%reset -f' without asking)."""
        if "-f" not in line.split():
            answer = input("Once deleted, variables cannot be recovered. Proceed (y/[n])? ")
            if not answer.strip().lower().startswith("y"):
                print("Nothing done.")
                return
        for name in list(self.user_ns):
            if name not in self.session.hidden_names:
                del self.user_ns[name]

    def line_pwd(self, line: str) -> str:
        """The board process's current directory."""
        return os.getcwd()

    def line_cd(self, line: str) -> None:
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

    def line_env(self, line: str):
        """The board's environment: '%env', '%env NAME', '%env NAME=value'."""
        line = line.strip()
        if not line:
            return dict(os.environ)
        match = re.match(r"^([^\s=]+)\s*(?:=\s*|\s+)(.*)$", line)
        if match:
            name, value = match.group(1), self.var_expand(match.group(2))
            os.environ[name] = value
            print("env: %s=%s" % (name, value))
            return None
        if line not in os.environ:
            raise UsageError("Environment does not have key: %s" % line)
        return os.environ[line]

    def line_pip(self, line: str) -> None:
        """pip of the board's Python: '%pip install NAME' installs on the board."""
        import shlex

        self.system("%s -m pip %s" % (shlex.quote(sys.executable), line))

    def line_system(self, line: str):
        return self.getoutput(line)

    line_sx = line_system

    def line_run(self, line: str) -> None:
        """Run a Python file on the board: '%run [-i] FILE [ARGS]'; its names land in your namespace."""
        import shlex

        words = shlex.split(line)
        in_namespace = bool(words) and words[0] == "-i"
        words = words[1:] if in_namespace else words
        if not words:
            raise UsageError("%run needs a file on the board, e.g. %run script.py")
        path = os.path.expanduser(words[0])
        if not os.path.isfile(path) and os.path.isfile(path + ".py"):
            path += ".py"
        if not os.path.isfile(path):
            raise UsageError("File `%s` not found on the board." % words[0])
        with open(path, "rb") as handle:
            code = compile(handle.read(), path, "exec", dont_inherit=True)
        if in_namespace:
            run_ns = self.user_ns
        else:
            run_ns = {"__name__": "__main__", "__file__": path, "__builtins__": builtins}
        saved_argv = sys.argv
        sys.argv = [path] + words[1:]
        try:
            exec(code, run_ns)
        finally:
            sys.argv = saved_argv
            if not in_namespace:
                for name, value in run_ns.items():
                    if name not in ("__name__", "__file__", "__builtins__"):
                        self.user_ns[name] = value

    def line_pinfo(self, line: str, detail_level: int = 0) -> None:
        """`obj?` inside a cell: print the board object's help."""
        name = line.strip()
        obj = _resolve(self.user_ns, name)
        if obj is _MISSING:
            print("Object `%s` not found." % name)
        else:
            print(describe(obj, name, detail_level))

    def line_pinfo2(self, line: str) -> None:
        self.line_pinfo(line, detail_level=1)

    def line_matplotlib(self, line: str) -> None:
        """'%matplotlib inline' (the default here): figures show in the notebook as PNG."""
        gui = line.strip() or "inline"
        if gui not in ("inline",):
            raise UsageError(
                "%%matplotlib %s: only 'inline' works on the board (figures are drawn there and shown"
                " in the notebook as PNG)" % gui
            )
        use_inline_backend()

    def line_config(self, line: str) -> None:
        """Only '%config InlineBackend.figure_format = "png" | "retina"' means something here."""
        match = re.match(r"^\s*InlineBackend\.figure_formats?\s*=\s*(.+)$", line)
        value = None
        if match:
            try:
                value = ast.literal_eval(match.group(1).strip())
            except (ValueError, SyntaxError):
                value = None
        if isinstance(value, str):
            formats = {value}
        elif isinstance(value, (list, tuple, set)):
            formats = set(value)
        else:
            formats = set()
        if not formats or not formats <= {"png", "retina"}:
            raise UsageError(
                "%config on the board only knows InlineBackend.figure_format = 'png' or 'retina'"
            )
        self.session.figure_format = "retina" if "retina" in formats else "png"

    def cell_bash(self, line: str, cell: str) -> None:
        """Run the cell as a bash script on the board."""
        self._script("bash", line, cell)

    def cell_sh(self, line: str, cell: str) -> None:
        """Run the cell as a sh script on the board."""
        self._script("sh", line, cell)

    def _script(self, program: str, line: str, cell: str) -> None:
        if line.strip():
            raise UsageError("%%%%%s takes no options on the board" % program)
        self.user_ns["_exit_code"] = self._run([program, "-c", cell], shell=False)

    def cell_writefile(self, line: str, cell: str) -> None:
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


def _pump(pipe, sink) -> None:
    """Copy a child's output to sink as it comes (decoded as UTF-8, partial lines included)."""
    decoder = codecs.getincrementaldecoder("utf-8")("replace")
    try:
        while True:
            data = os.read(pipe.fileno(), 65536)
            if not data:
                break
            text = decoder.decode(data)
            if text:
                sink(text)
        text = decoder.decode(b"", True)
        if text:
            sink(text)
    except (OSError, ValueError):
        pass
    finally:
        pipe.close()


def _stop_process(process) -> None:
    """Stop a shell command and its children: SIGINT like Ctrl-C, then SIGKILL if it lingers."""
    import subprocess

    if process.poll() is not None:
        return
    try:
        if os.name == "posix":
            os.killpg(process.pid, signal.SIGINT)
        else:
            process.terminate()
        process.wait(1.0)
    except subprocess.TimeoutExpired:
        try:
            if os.name == "posix":
                os.killpg(process.pid, signal.SIGKILL)
            else:
                process.kill()
        except OSError:
            pass
    except OSError:
        pass


# --------------------------------------------------------------------------- entry points


SESSIONS = {}


def attach(session_id: str) -> Session:
    """The session of this id, created on first use; reattaching keeps its namespace."""
    _install_hooks()
    session = SESSIONS.get(session_id)
    if session is None:
        session = Session(session_id)
        SESSIONS[session_id] = session
    return session


def board_info() -> str:
    """What the kernel shows about the board: Python, platform, process."""
    import os
    import platform

    return json.dumps(
        {
            "python": platform.python_version(),
            "implementation": platform.python_implementation(),
            "platform": platform.platform(),
            "machine": platform.machine(),
            "hostname": platform.node(),
            "pid": os.getpid(),
            "main_thread_executor": sys.modules.get(EXECUTOR_MODULE) is not None,
            "boot_id": _state().boot_id,
            "agent_loaded": _state().started,
            "time": time.time(),
        }
    )


def board_status() -> str:
    """board_info plus what changes over time (uptimes, memory, load), for the kernel's status()."""
    status = json.loads(board_info())
    system_uptime = _system_uptime()
    status["uptime"] = system_uptime
    status["server_uptime"] = _process_uptime(system_uptime)
    status.update(_memory())
    try:
        status["load"] = list(os.getloadavg())
    except (AttributeError, OSError):
        status["load"] = None
    return json.dumps(status)


def ping() -> str:
    """The cheapest round trip through the agent: what the kernel times as the link's latency."""
    return ""


def _read_text(path: str) -> str:
    try:
        with open(path) as handle:
            return handle.read()
    except (OSError, ValueError):
        return ""


def _system_uptime():
    """Seconds since the board booted (Linux /proc/uptime), or None where that is unknown."""
    fields = _read_text("/proc/uptime").split()
    try:
        return float(fields[0])
    except (IndexError, ValueError):
        return None


def _process_uptime(system_uptime):
    """Seconds this server process has run: /proc/self/stat, else since the agent state was made."""
    stat = _read_text("/proc/self/stat")
    if system_uptime is not None and stat and hasattr(os, "sysconf"):
        try:
            # field 22 (starttime, clock ticks after boot); the command name in field 2 may hold spaces
            start_ticks = int(stat.rsplit(")", 1)[1].split()[19])
            return max(0.0, system_uptime - start_ticks / os.sysconf("SC_CLK_TCK"))
        except (IndexError, ValueError, OSError):
            pass
    state = _state()
    if not hasattr(state, "started"):
        state.started = time.time()
    return time.time() - state.started


def _memory() -> dict:
    """MemTotal / MemAvailable in bytes from /proc/meminfo (empty where there is none)."""
    found = {}
    for line in _read_text("/proc/meminfo").splitlines():
        name, _, rest = line.partition(":")
        if name in ("MemTotal", "MemAvailable"):
            try:
                found["memory_total" if name == "MemTotal" else "memory_available"] = (
                    int(rest.split()[0]) * 1024
                )
            except (IndexError, ValueError):
                pass
    return found


# --------------------------------------------------------------------------- file transfer
# The kernel streams a file in chunks over a side connection. Every call returns JSON (or bytes for
# read_chunk) and never raises for a user's mistake, so errors arrive as one clear line. An upload
# is written to a hidden temporary file next to its target and renamed into place only once its
# sha256 matches the kernel's: a failed or interrupted upload never leaves a half-written file.

TRANSFER_IDLE_LIMIT = 600.0  # seconds after which an abandoned transfer is closed and cleaned up
TRANSFERS = {}


class _Transfer(object):
    def __init__(self, kind: str, path: str, handle, temp_path=None) -> None:
        self.kind = kind
        self.path = path
        self.file = handle
        self.temp_path = temp_path
        self.sha256 = hashlib.sha256()
        self.size = 0
        self.touched = time.monotonic()

    def discard(self) -> None:
        try:
            self.file.close()
        except OSError:
            pass
        if self.temp_path is not None:
            try:
                os.remove(self.temp_path)
            except OSError:
                pass


def _error(text: str) -> str:
    return json.dumps({"error": text})


def _describe_os_error(exc: OSError, path: str) -> str:
    if isinstance(exc, PermissionError):
        return "permission denied on the board: %s" % path
    if exc.errno == errno.ENOSPC:
        return "the board's disk is full while writing %s" % path
    return "%s on the board: %s" % (exc.strerror or exc, path)


def _new_transfer(handle: str, transfer: _Transfer) -> None:
    """Register a transfer under the kernel's handle; drop those abandoned long ago."""
    now = time.monotonic()
    for old_handle, old in list(TRANSFERS.items()):
        if now - old.touched > TRANSFER_IDLE_LIMIT:
            TRANSFERS.pop(old_handle, None)
            old.discard()
    TRANSFERS[handle] = transfer


def _transfer(handle: str, kind: str):
    transfer = TRANSFERS.get(handle)
    if transfer is None or transfer.kind != kind:
        return None
    transfer.touched = time.monotonic()
    return transfer


def open_upload(handle: str, path: str, default_name: str, size: int, mode: int) -> str:
    """Start writing a file of `size` bytes to path (a directory or a trailing "/" gets default_name).

    The kernel picks the handle, so it can abandon a transfer whose reply it never saw.
    """
    target = os.path.expanduser(path or default_name)
    if target.endswith(("/", os.sep)) or os.path.isdir(target):
        target = os.path.join(target, default_name)
    target = os.path.abspath(target)
    directory = os.path.dirname(target)
    if not os.path.isdir(directory):
        return _error("no such directory on the board: %s (create it first)" % directory)
    if os.path.isdir(target):
        return _error("%s is a directory on the board" % target)
    if hasattr(os, "statvfs"):
        try:
            stats = os.statvfs(directory)
            free = stats.f_bavail * stats.f_frsize
            if size > free:
                return _error(
                    "not enough space on the board: %d bytes needed, %d free in %s" % (size, free, directory)
                )
        except OSError:
            pass
    try:
        descriptor, temp_path = tempfile.mkstemp(
            prefix="." + os.path.basename(target) + ".", suffix=".part", dir=directory
        )
    except OSError as exc:
        return _error(_describe_os_error(exc, directory))
    try:
        os.chmod(temp_path, mode & 0o777)
    except OSError:
        pass
    _new_transfer(handle, _Transfer("upload", target, os.fdopen(descriptor, "wb"), temp_path))
    return json.dumps({"path": target})


def write_chunk(handle: str, data: bytes) -> str:
    """Append one chunk to an upload; returns the bytes written so far."""
    transfer = _transfer(handle, "upload")
    if transfer is None:
        return _error("the upload was abandoned on the board (the board agent was restarted?); try again")
    try:
        transfer.file.write(data)
    except (OSError, ValueError) as exc:  # ValueError: aborted meanwhile from another connection
        TRANSFERS.pop(handle, None)
        transfer.discard()
        return _error(_describe_os_error(exc, transfer.path))
    transfer.sha256.update(data)
    transfer.size += len(data)
    return json.dumps({"size": transfer.size})


def finish_upload(handle: str, expected_sha256: str) -> str:
    """Put the upload in place if its sha256 is the kernel's; otherwise throw it away."""
    transfer = TRANSFERS.pop(handle, None)
    if transfer is None or transfer.kind != "upload":
        return _error("the upload was abandoned on the board (the board agent was restarted?); try again")
    digest = transfer.sha256.hexdigest()
    try:
        transfer.file.close()
        if digest != expected_sha256:
            transfer.discard()
            return _error(
                "checksum mismatch: the board received sha256 %s, the kernel sent %s; %s was not written"
                % (digest, expected_sha256, transfer.path)
            )
        os.replace(transfer.temp_path, transfer.path)
    except OSError as exc:
        transfer.discard()
        return _error(_describe_os_error(exc, transfer.path))
    return json.dumps({"path": transfer.path, "size": transfer.size, "sha256": digest})


def open_download(handle: str, path: str) -> str:
    """Start reading a board file; returns its absolute path, size and permission bits."""
    target = os.path.abspath(os.path.expanduser(path))
    if os.path.isdir(target):
        return _error("%s is a directory on the board; download files one at a time" % target)
    if not os.path.exists(target):
        directory = os.path.dirname(target)
        if not os.path.isdir(directory):
            return _error("no such directory on the board: %s" % directory)
        return _error("no such file on the board: %s" % target)
    try:
        reader = open(target, "rb")
        stats = os.fstat(reader.fileno())
    except OSError as exc:
        return _error(_describe_os_error(exc, target))
    _new_transfer(handle, _Transfer("download", target, reader))
    return json.dumps({"path": target, "size": stats.st_size, "mode": stats.st_mode & 0o777})


def read_chunk(handle: str, size: int):
    """The next chunk of a download as bytes (b"" at the end), or a JSON error as str."""
    transfer = _transfer(handle, "download")
    if transfer is None:
        return _error("the download was abandoned on the board (the board agent was restarted?); try again")
    try:
        data = transfer.file.read(size)
    except (OSError, ValueError) as exc:
        TRANSFERS.pop(handle, None)
        transfer.discard()
        return _error(_describe_os_error(exc, transfer.path))
    transfer.sha256.update(data)
    transfer.size += len(data)
    return data


def finish_download(handle: str) -> str:
    """Close a download; returns the size and sha256 of what was sent."""
    transfer = TRANSFERS.pop(handle, None)
    if transfer is None or transfer.kind != "download":
        return _error("the download was abandoned on the board (the board agent was restarted?); try again")
    transfer.discard()
    return json.dumps({"path": transfer.path, "size": transfer.size, "sha256": transfer.sha256.hexdigest()})


def abort_transfer(handle: str) -> str:
    """Drop a transfer the kernel gave up on (an upload's temporary file is removed)."""
    transfer = TRANSFERS.pop(handle, None)
    if transfer is not None:
        transfer.discard()
    return json.dumps({"aborted": transfer is not None})


def tune_link(connection, compress: bool) -> None:
    """Set how this board's end of an rpyc connection sends: zlib compression, and no Nagle delay.

    rpyc servers leave Nagle's algorithm on; a reply over 64 KiB is written in parts and its last
    part then waits for the kernel's delayed ACK (~40 ms a reply: a 128 KiB chunk download crawled
    at 3.5 MiB/s on loopback).
    """
    connection._channel.compress = bool(compress)
    try:
        sock = connection._channel.stream.sock
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except (AttributeError, OSError):
        pass  # not a TCP socket stream: nothing to tune


# --------------------------------------------------------------------------- live images

IMAGE_SIGNATURES = (
    (b"\xff\xd8\xff", "jpeg"),
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"GIF87a", "gif"),
    (b"GIF89a", "gif"),
    (b"BM", "bmp"),
)
BROWSER_FORMATS = ("jpeg", "png", "gif")  # what a notebook shows as is
FRAME_SAME = "same"  # answer kind: the kernel already shows this frame
FRAME_MESSAGE = "message"  # answer kind: no frame; the payload says why, in one line
JPEG_QUALITY = 85
_PILLOW = []  # [PIL.Image module or None], looked up once per agent version
# While frames are requested, a cell that never sleeps must hand the GIL to the serving thread
# sooner than Python's default 5 ms: every blocking socket call of that thread waits one interval
# to get the GIL back. 1 ms: ~5x the frames from a busy cell, for a few percent of its speed.
FRAME_SWITCH_INTERVAL = 0.001
SWITCH_RESTORE_AFTER = 1.0  # seconds without a frame request before the interval is put back


def sniff_image_format(data) -> str:
    """'jpeg', 'png', 'gif' or 'bmp' from the first bytes; '' when none of them."""
    head = bytes(data[:8])
    for magic, name in IMAGE_SIGNATURES:
        if head.startswith(magic):
            return name
    return ""


def _pillow():
    """PIL.Image if Pillow is installed on the board, else None (checked once: imports touch disk)."""
    if not _PILLOW:
        try:
            from PIL import Image
        except ImportError:
            Image = None
        _PILLOW.append(Image)
    return _PILLOW[0]


def _is_pil_image(value) -> bool:
    return type(value).__module__.startswith("PIL.") and hasattr(value, "tobytes") and hasattr(value, "save")


def encode_pil_image(image) -> tuple:
    """(format, bytes): JPEG for RGB/L images (fast to encode on a weak board, small), else PNG."""
    out = io.BytesIO()
    if image.mode in ("RGB", "L"):
        image.save(out, "JPEG", quality=JPEG_QUALITY)
        return "jpeg", out.getvalue()
    if image.mode not in ("RGBA", "LA", "P", "1", "I;16", "I"):
        image = image.convert("RGBA")
    image.save(out, "PNG")
    return "png", out.getvalue()


def _frame_bytes(value):
    """The encoded bytes a bytes-like value holds, or None for any other kind of value."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, io.BytesIO):
        return value.getvalue()  # CPython shares the buffer: no copy, and hash() stays cached
    return None


def _wrong_type_message(name: str, value) -> str:
    kind = type(value).__name__
    hint = ""
    if kind == "ndarray":
        hint = "; encode it first, e.g. cv2.imencode('.jpg', frame)[1].tobytes()"
    return (
        "%s holds a %s, not an image: store JPEG/PNG/GIF/BMP bytes (bytes, bytearray, BytesIO,"
        " memoryview) or a PIL image in it%s; waiting" % (name, kind, hint)
    )


def _transcode(name: str, data: bytes, kind: str) -> tuple:
    """BMP and other formats become JPEG/PNG here if Pillow is on the board, else the kernel does it."""
    image_module = _pillow()
    if image_module is None:
        return kind or "unknown", data
    try:
        image = image_module.open(io.BytesIO(data))
        image.load()
    except Exception:
        return FRAME_MESSAGE, (
            "%s holds %d bytes that are not JPEG, PNG, GIF or BMP, nor any image Pillow can read;"
            " waiting" % (name, len(data))
        )
    return encode_pil_image(image)


def _encoded_frame(name: str, data: bytes) -> tuple:
    """(kind, payload) for encoded bytes: sent as they are when a notebook can show them."""
    if not data:
        return FRAME_MESSAGE, "%s is empty (0 bytes); waiting for a frame" % name
    kind = sniff_image_format(data)
    if kind in BROWSER_FORMATS:
        return kind, data
    return _transcode(name, data, kind)


def _describe_frame(namespace: dict, name: str) -> tuple:
    """(digest, a function making (kind, payload)): the digest is cheap, the frame is made if needed.

    The digest of bytes is hash(): bytes objects cache it, so an unchanged frame costs no hashing,
    and hash() never releases the GIL (hashlib and zlib.crc32 do on large data, and getting the GIL
    back costs a whole switch interval while a busy cell holds it).
    """
    value = namespace.get(name, _MISSING)
    if value is _MISSING:
        text = "%s is not defined on the board yet; waiting for it" % name
        return "missing", lambda: (FRAME_MESSAGE, text)
    data = _frame_bytes(value)
    if data is not None:
        return "b%d:%x" % (len(data), hash(data)), lambda: _encoded_frame(name, data)
    if _is_pil_image(value):
        digest = "p%s:%s:%x" % (value.mode, value.size, hash(value.tobytes()))
        return digest, lambda: encode_pil_image(value)
    return "type:" + type(value).__name__, lambda: (FRAME_MESSAGE, _wrong_type_message(name, value))


def read_frame(namespace: dict, name: str, last_digest: str) -> tuple:
    """(digest, kind, payload) of one board variable; kind FRAME_SAME when it did not change."""
    try:
        digest, make = _describe_frame(namespace, name)
        if digest == last_digest:
            return digest, FRAME_SAME, b""
        kind, payload = make()
    except Exception as exc:
        text = "reading %s failed: %s: %s; waiting" % (name, type(exc).__name__, exc)
        digest = "error:" + text
        if digest == last_digest:
            return digest, FRAME_SAME, b""
        return digest, FRAME_MESSAGE, text
    return digest, kind, payload


def _streaming_now() -> None:
    """Shorten the GIL switch interval while frames are requested (restored once they stop)."""
    state = _state()
    state.last_frame_request = time.monotonic()
    if getattr(state, "saved_switch_interval", None) is not None:
        return
    with state.__dict__.setdefault("frames_lock", threading.Lock()):
        if getattr(state, "saved_switch_interval", None) is not None:
            return
        current = sys.getswitchinterval()
        if current <= FRAME_SWITCH_INTERVAL:
            return  # the board's own, shorter setting stays as it is
        state.saved_switch_interval = current
        sys.setswitchinterval(FRAME_SWITCH_INTERVAL)
    threading.Thread(target=_restore_switch_interval, name="rpyc_ikernel frames", daemon=True).start()


def _restore_switch_interval() -> None:
    state = _state()
    while time.monotonic() - state.last_frame_request < SWITCH_RESTORE_AFTER:
        state.original_sleep(SWITCH_RESTORE_AFTER / 4)
    with state.frames_lock:
        if sys.getswitchinterval() == FRAME_SWITCH_INTERVAL:  # unless someone set another since
            sys.setswitchinterval(state.saved_switch_interval)
        state.saved_switch_interval = None


class OneCallSocketStream(object):
    """The board's end of a frames connection: one recv per request and one send per answer.

    Stands in for rpyc's SocketStream, which polls, then reads a request's header and its body with
    separate calls. Each blocking call lets a busy cell take the GIL, and getting it back costs a
    whole switch interval: this stream halves those waits. Data a recv brings beyond the current
    request stays buffered, so poll() answers from the buffer first.
    """

    MAX_IO_CHUNK = 1 << 26  # rpyc's Channel then writes header, frame and flusher in one send

    def __init__(self, stream) -> None:
        self.stream = stream  # rpyc's SocketStream: closing and fileno stay its business
        self.sock = stream.sock
        self.buffer = bytearray()

    @property
    def closed(self) -> bool:
        return self.stream.closed

    def close(self) -> None:
        self.stream.close()

    def fileno(self) -> int:
        return self.stream.fileno()

    def poll(self, timeout) -> bool:
        if self.buffer:
            return True
        left = timeout.timeleft() if hasattr(timeout, "timeleft") else timeout
        if left is None:  # serving for good: wait for the next request inside recv itself
            self._fill()
            return True
        return self.stream.poll(timeout)

    def read(self, count: int) -> bytes:
        while len(self.buffer) < count:
            self._fill()
        data = bytes(self.buffer[:count])
        del self.buffer[:count]
        return data

    def write(self, data) -> None:
        try:
            self.sock.sendall(data)
        except (OSError, ValueError) as exc:
            self.close()
            raise EOFError(exc)

    def _fill(self) -> None:
        while True:
            try:
                chunk = self.sock.recv(1 << 18)
            except socket.timeout:
                continue
            except (OSError, ValueError) as exc:
                self.close()
                raise EOFError(exc)
            break
        if not chunk:
            self.close()
            raise EOFError("connection closed by peer")
        self.buffer += chunk


def prepare_frame_connection(conn) -> str:
    """Tune the board's end of a frames connection: no compression, and one call per request.

    conn is this side's rpyc Connection (the kernel passes ``conn.root.getconn()``). Returns what
    was done, for the kernel's log.
    """
    channel = conn._channel
    channel.compress = False  # JPEG/PNG do not compress; zlib would only cost board time
    stream = channel.stream
    if type(stream).__name__ != "SocketStream" or type(getattr(stream, "sock", None)) is not socket.socket:
        return "uncompressed"  # TLS (an SSLSocket), tunnels, pipes: rpyc's own stream stays
    channel.stream = OneCallSocketStream(stream)
    return "uncompressed, one call per request"


def read_frames(session_id: str, wanted: tuple) -> tuple:
    """The frames of several board variables in one round trip, only those that changed.

    wanted is ((name, digest the kernel shows), ...); the answer holds one (digest, kind, payload)
    per name: kind FRAME_SAME (payload b""), 'jpeg'/'png'/'gif' (the encoded bytes, sent as they
    are), 'bmp'/'unknown' (bytes for the kernel to transcode: no Pillow here), or FRAME_MESSAGE
    (payload: one line saying why there is no frame). Only str/bytes/tuples: they cross by value.
    """
    _streaming_now()
    session = SESSIONS.get(session_id)
    namespace = session.namespace if session is not None else {}
    return tuple(read_frame(namespace, name, digest) for name, digest in wanted)
