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
import inspect
import io
import json
import keyword
import linecache
import pprint
import re
import sys
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
    if cell is None or cell.main_thread_mode:
        return _state().original_sleep(seconds)
    if seconds < 0:
        raise ValueError("sleep length must be non-negative")
    deadline = time.monotonic() + seconds
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None
        if cell.interrupt_event.wait(min(remaining, 0.05)):
            raise KeyboardInterrupt()


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
    if not inspect.isclass(obj):
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


# --------------------------------------------------------------------------- running a cell


def _last_statement_silenced(code: str) -> bool:
    """IPython hides the result when the cell's last code line ends with ';'."""
    for line in reversed(code.splitlines()):
        stripped = line.split("#", 1)[0].strip() if "#" in line else line.strip()
        if stripped:
            return stripped.endswith(";")
    return False


def _format_error(exc_type, exc, tb) -> dict:
    """ename/evalue/traceback with the agent's own frames left out."""
    agent_file = _format_error.__code__.co_filename
    while tb is not None and tb.tb_frame.f_code.co_filename == agent_file:
        tb = tb.tb_next
    if isinstance(exc, SyntaxError):
        lines = traceback.format_exception_only(exc_type, exc)
    else:
        lines = traceback.format_exception(exc_type, exc, tb)
    return {
        "status": "error",
        "ename": exc_type.__name__,
        "evalue": str(exc),
        "traceback": [line.rstrip("\n") for line in lines],
    }


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
            body = compile(tree, self.filename, "exec")
            tail = compile(last, self.filename, "eval") if last is not None else None
        except (SyntaxError, ValueError, OverflowError) as exc:
            return _format_error(type(exc), exc, None)
        value = None
        try:
            self.interruptible = True
            if self.interrupt_event.is_set():
                raise KeyboardInterrupt()
            exec(body, ns)
            if tail is not None:
                value = eval(tail, ns)
            self.interruptible = False
        except BaseException:
            self.interruptible = False
            exc_type, exc, tb = sys.exc_info()
            return _format_error(exc_type, exc, tb)
        reply = {"status": "ok"}
        if value is not None and not _last_statement_silenced(self.code):
            ns["_"] = value
            data, metadata = format_bundle(value)
            reply["result"] = {"data": data, "metadata": metadata}
        return reply


class Session:
    """One kernel's namespace and output queue on the board; outlives a dropped connection."""

    def __init__(self, session_id: str) -> None:
        self.session_id = session_id
        self.namespace = {
            "__name__": "__main__",
            "__builtins__": builtins,
            "display": display,
            "update_display": update_display,
            "clear_output": clear_output,
        }
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

    # ------------------------------------------------------------ output from the cell
    def write_stream(self, name: str, text: str, block: bool) -> None:
        if not text:
            return
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
        self, code: str, filename: str, wait: float, allow_stdin: bool = False, silent: bool = False
    ) -> str:
        """Start a cell, then wait up to `wait` seconds for it: a quick cell costs one round trip."""
        self.requests += 1
        with self._cond:
            if self.cell is not None:
                return json.dumps({"busy": True, "events": [], "done": False})
            self._reply = None
            cell = CellRun(self, code, filename, allow_stdin, silent)
            self.cell = cell
        _state().last_session = self
        executor = sys.modules.get(EXECUTOR_MODULE)
        if executor is not None:
            cell.main_thread_mode = True
            executor.submit(cell)
        else:
            threading.Thread(target=cell, name="rpyc_ikernel cell", daemon=True).start()
        return self._poll(wait)

    def poll(self, wait: float) -> str:
        """Wait up to `wait` seconds for output worth sending or the cell's end; return them as JSON."""
        self.requests += 1
        return self._poll(wait)

    def _poll(self, wait: float) -> str:
        deadline = time.monotonic() + wait
        with self._cond:
            while True:
                if self._reply is not None or self._input_waiting:
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
            events = self._take_events()
            done = self._reply is not None
            message = {"events": events, "done": done}
            if done:
                message["reply"] = self._reply
                self._reply = None
            elif self._input_waiting and self._input_prompt is not None:
                message["input"] = self._input_prompt
                self._input_prompt = None
            self._cond.notify_all()
        return json.dumps(message)

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

    def interrupt(self) -> bool:
        """Stop the running cell with KeyboardInterrupt; True when a cell was running."""
        cell = self.cell
        if cell is None:
            return False
        cell.interrupt_event.set()
        with self._cond:
            self._cond.notify_all()
        if not cell.interruptible:
            return True
        executor = sys.modules.get(EXECUTOR_MODULE)
        if cell.main_thread_mode and executor is not None:
            executor.interrupt(cell)
        elif cell.thread_ident is not None:
            _raise_in_thread(cell.thread_ident, KeyboardInterrupt)
        return True

    # ------------------------------------------------------------ input()
    def request_input(self, prompt: str, password: bool) -> str:
        cell = self.cell
        if cell is None or not cell.allow_stdin:
            raise StdinNotImplementedError(
                "input() was called, but this frontend does not support input requests."
            )
        with self._cond:
            self._input_answer = None
            self._input_prompt = {"prompt": prompt, "password": password}
            self._input_waiting = True
            self._cond.notify_all()
            while self._input_answer is None:
                if cell.interrupt_event.is_set():
                    self._input_waiting = False
                    raise KeyboardInterrupt()
                self._cond.wait(0.05)
            answer = self._input_answer
            self._input_answer = None
            self._input_waiting = False
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


def complete(namespace: dict, code: str, cursor_pos: int) -> dict:
    """Names and attributes from the board namespace that complete the word before the cursor."""
    before = code[:cursor_pos]
    match = _NAME_CHAIN.search(before)
    word = match.group(0) if match else ""
    # Imported on first use: rlcompleter loads readline, ~0.8 MB of a small board's memory.
    import rlcompleter

    completer = rlcompleter.Completer(namespace)
    matches = []
    if word:
        state = 0
        while state < 1000:
            try:
                candidate = completer.complete(word, state)
            except Exception:
                candidate = None
            if candidate is None:
                break
            candidate = candidate.rstrip("(")
            if candidate.endswith(" "):  # keywords come back with a trailing space
                candidate = candidate.rstrip()
            if candidate not in matches:
                matches.append(candidate)
            state += 1
    if "." not in word:
        hidden = word.startswith("_")
        matches = [m for m in matches if hidden or not m.startswith("_")]
    types_ = []
    for candidate in matches:
        kind = "keyword" if keyword.iskeyword(candidate) else _kind(_resolve(namespace, candidate))
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


def describe(obj, name: str, detail_level: int) -> str:
    """An IPython-like help text: type, signature, docstring, file and (detail 1) source."""
    fields = []
    try:
        signature = str(inspect.signature(obj)) if callable(obj) else None
    except (TypeError, ValueError):
        signature = None
    if signature is not None:
        fields.append(("Signature", name + signature))
    fields.append(("Type", type(obj).__name__))
    if not (inspect.isroutine(obj) or inspect.isclass(obj) or inspect.ismodule(obj)):
        text = _plain_text(obj)
        if len(text) > 200:
            text = text[:200] + "..."
        fields.append(("String form", text))
    try:
        path = inspect.getfile(obj)
        fields.append(("File", path))
    except TypeError:
        pass
    source = None
    if detail_level > 0:
        try:
            source = inspect.getsource(obj)
        except (OSError, TypeError):
            source = None
    docstring = inspect.getdoc(obj) or "<no docstring>"
    lines = ["%-12s%s" % (label + ":", value) for label, value in fields]
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
        }
    )
