"""The board's debugger: breakpoints, stepping and variables for a session's cells (bdb, stdlib only).

The cell runs on its own thread (the server's main thread, or a worker on a plain server). While the
debugger is started, that thread runs under this Bdb: frames are traced line by line only when their
file has a breakpoint (or while stepping), so code without breakpoints runs at nearly full speed; with
the debugger off nothing is installed. On Python 3.12+ the events come from sys.monitoring instead of
sys.settrace (see _Monitor): code without breakpoints then costs one event per code object, not one
per call. At a stop the cell's thread waits here, and the kernel's
requests (stack, scopes, variables, evaluate, next, continue, ...) are answered from rpyc's serving
threads, which read the stopped thread's frames. Events (stopped, continued) travel with the cell's
output, so output printed before a stop is shown before it.

Requests and answers are the bodies of the Debug Adapter Protocol (see rpyc_ikernel/debugger.py).
"""

import bdb
import json
import linecache
import os
import sys
import threading
import types
from _thread import get_ident

MONITORING = getattr(sys, "monitoring", None)  # Python 3.12+: events per code object, see _Monitor

THREAD_ID = 1  # the cell's thread, as the front end knows it
MAX_REPR = 1000  # characters of a value shown in the Variables panel
PAGE = 300  # children listed at most when the front end asks for no page
AGENT_FILES = os.path.dirname(__file__)
_HIDDEN_NAMES = frozenset(
    ("__name__", "__doc__", "__package__", "__loader__", "__spec__", "__annotations__", "__builtins__")
)


GROUPS = ("special variables", "function variables", "class variables")
_FUNCTIONS = (types.FunctionType, types.BuiltinFunctionType, types.MethodType)


class _Group(object):
    """A row that groups variables (special, function, class), as debugpy shows them."""

    def __init__(self, members):
        self.members = members


class DebugError(Exception):
    """A request that cannot be answered: its message goes back as the DAP response's message."""


def debug_event(event, body):
    """A DAP event, as an output event the kernel publishes on iopub (it adds the seq)."""
    return {"msg_type": "debug_event", "content": {"type": "event", "event": event, "body": body}}


def safe_repr(value):
    try:
        text = repr(value)
    except Exception as exc:
        text = "<repr failed: %s>" % type(exc).__name__
    if len(text) > MAX_REPR:
        text = text[:MAX_REPR] + "..."
    return text


def has_children(value):
    if isinstance(value, (str, bytes, bytearray, int, float, complex, bool, type(None))):
        return False
    if isinstance(value, (dict, list, tuple, set, frozenset)):
        return len(value) > 0
    return bool(getattr(value, "__dict__", None))


def children(value, evaluate_name):
    """(name, value, evaluateName) of a container's items or an object's attributes."""
    if isinstance(value, dict):
        return [(safe_repr(k), v, "%s[%r]" % (evaluate_name, k)) for k, v in list(value.items())]
    if isinstance(value, (list, tuple)):
        return [(str(i), v, "%s[%d]" % (evaluate_name, i)) for i, v in enumerate(list(value))]
    if isinstance(value, (set, frozenset)):
        return [(str(i), v, "") for i, v in enumerate(list(value))]
    attributes = getattr(value, "__dict__", None) or {}
    return [(str(k), v, "%s.%s" % (evaluate_name, k)) for k, v in sorted(attributes.items(), key=str)]


class References(object):
    """variablesReference numbers for the containers and scopes shown; valid until the next stop."""

    def __init__(self):
        self.items = {}

    def clear(self):
        self.items = {}

    def add(self, item):
        number = len(self.items) + 1
        self.items[number] = item
        return number

    def get(self, number):
        try:
            return self.items[number]
        except KeyError:
            raise DebugError("unknown variablesReference %r (the program ran on since)" % (number,))


class BoardDebugger(bdb.Bdb):
    """One kernel session's debugger: its breakpoints, and the stop its cell is waiting in."""

    def __init__(self, session):
        bdb.Bdb.__init__(self)
        self.session = session
        self.started = False
        self.points = {}  # canonic file name -> {line: condition or None}
        self.lines = {}  # the same, under the file names as code objects have them too
        self.files = frozenset()  # the file names of self.lines
        self.monitor = None  # a _Monitor while a cell runs under sys.monitoring (3.12+)
        self.stepping = False  # True from a step or pause until the next continue
        self.exception_filters = ()
        self.refs = References()
        self.frames = {}  # frameId -> frame, for the current stop
        self.cell = None  # the CellRun traced now
        self.stopped_frame = None
        self.reason = "step"
        self._command = None
        self._cond = threading.Condition()
        self._hidden = None
        self._last_exception = None

    # ------------------------------------------------------------ the cell's thread
    def run(self, cell, frame, execute):
        """Call `execute` (runs a compiled part of `cell`, see compiling.run_compiled: top-level await
        included) under this debugger; frame: the caller, where tracing ends."""
        self.cell = cell
        self.reset()
        self.botframe = frame
        self._set_stopinfo(frame, None, -1)  # run until a breakpoint
        self.stepping = False
        self.monitor = _Monitor.begin(self) if MONITORING is not None else None
        if self.monitor is None:
            sys.settrace(self._call_hook)
        try:
            return execute()
        except Exception as exc:
            self._stop_uncaught(exc)
            raise
        finally:
            self._untrace()
            self.cell = None
            self.stopped_frame = None
            self._last_exception = None

    def _untrace(self):
        """Nothing traced on this thread from here on (the cell's end, a disconnect, an uncaught stop)."""
        monitor, self.monitor = self.monitor, None
        if monitor is not None:
            monitor.end()
        else:
            sys.settrace(None)

    def _call_hook(self, frame, event, arg):
        """The thread's trace function, called for each new frame: the cheap test first.

        A frame is handed to bdb only while stepping or when its file has a breakpoint; any other
        frame runs untraced (bdb would call several Python methods per call to find that out).
        """
        if self.stepping or frame.f_code.co_filename in self.files:
            return self.trace_dispatch(frame, event, arg)
        return None

    def canonic(self, filename):
        if filename.startswith("<") and filename.endswith(">"):
            return filename
        return bdb.Bdb.canonic(self, filename)

    def hidden(self, frame):
        if self._hidden is None:
            from .errors import _hidden_files

            self._hidden = _hidden_files()
        filename = frame.f_code.co_filename
        return (
            filename.startswith(AGENT_FILES + os.sep) or filename in self._hidden or filename == bdb.__file__
        )

    def dispatch_call(self, frame, arg):
        if self.hidden(frame):
            return None  # the agent's own code (output, display) is never traced
        return bdb.Bdb.dispatch_call(self, frame, arg)

    def stop_here(self, frame):
        return not self.hidden(frame) and bdb.Bdb.stop_here(self, frame)

    def break_here(self, frame):
        lines = self.points.get(self.canonic(frame.f_code.co_filename))
        if not lines or frame.f_lineno not in lines:
            return False
        condition = lines[frame.f_lineno]
        if condition:
            try:
                if not eval(condition, frame.f_globals, frame.f_locals):
                    return False
            except Exception:
                pass  # like pdb: a condition that fails stops
        self.reason = "breakpoint"
        return True

    def break_anywhere(self, frame):
        return self.canonic(frame.f_code.co_filename) in self.points

    def user_call(self, frame, argument_list):
        pass  # stepping into a function stops at its first line, not at the call

    def user_return(self, frame, return_value):
        """Next, Step in or Step out leaving a function stop in its caller at once, as debugpy does
        (the caller may have no line left to run: a cell's last line that called it)."""
        caller = frame.f_back
        if caller is None or caller is self.botframe or self.hidden(caller):
            return  # back in the agent: the cell ends
        self._stop(caller, "step")

    def user_line(self, frame):
        self._stop(frame, self.reason)

    def dispatch_exception(self, frame, arg):
        """Break on raised exceptions (filter "raised"): once per exception, where it is raised."""
        exception = arg[1]
        if (
            "raised" in self.exception_filters
            and exception is not self._last_exception
            and not isinstance(exception, (StopIteration, GeneratorExit))
            and not self.hidden(frame)
        ):
            self._last_exception = exception
            self._stop(frame, "exception", exception)
        return self.trace_dispatch

    def _stop_uncaught(self, exception):
        """Break on uncaught exceptions (filter "uncaught"): stop where raised, before the cell ends."""
        if "uncaught" not in self.exception_filters or not self.started:
            return
        self._untrace()  # nothing runs on from here: the stop only shows the frames
        frame = None
        tb = exception.__traceback__
        while tb is not None:
            if not self.hidden(tb.tb_frame) and tb.tb_frame is not self.botframe:
                frame = tb.tb_frame
            tb = tb.tb_next
        if frame is not None:
            self._stop(frame, "exception", exception)

    def _stop(self, frame, reason, exception=None):
        cell = self.cell
        if cell is None or not self.started:
            return
        self.reason = "step"
        f = frame
        while self.monitor is None and f is not None and f is not self.botframe:
            f.f_trace = self.trace_dispatch  # so that stepping out reaches the callers
            f = f.f_back
        with self._cond:
            self.refs.clear()
            self.frames = {}
            self._command = None
            self.stopped_frame = frame
        body = {"reason": reason, "threadId": THREAD_ID, "allThreadsStopped": True}
        if exception is not None:
            body["text"] = "%s: %s" % (type(exception).__name__, exception)
            body["description"] = body["text"]
        self.session.emit(debug_event("stopped", body), urgent=True)
        try:
            with cell.waiting_inside_agent():
                with self._cond:
                    while self._command is None:
                        cell.check_interrupt()  # an interrupt while stopped ends the cell
                        self._cond.wait(0.05)
                    command, self._command = self._command, None
        finally:
            with self._cond:
                self.stopped_frame = None
                self.frames = {}
                self.refs.clear()
        self.session.emit(
            debug_event("continued", {"threadId": THREAD_ID, "allThreadsContinued": True}), True
        )
        self._resume(command, frame)

    def _resume(self, command, frame):
        self.stepping = command != "continue"
        if command == "next":
            self.set_next(frame)
        elif command == "stepIn":
            self.set_step()
        elif command == "stepOut":
            self.set_return(frame)
        else:
            self._set_stopinfo(self.botframe, None, -1)
            if not self.started:
                self._untrace()
                f = frame
                while f is not None and f is not self.botframe:
                    f.f_trace = None
                    f = f.f_back
        if self.monitor is not None:
            self.monitor.resumed(frame)

    # ------------------------------------------------------------ requests (rpyc serving threads)
    def handle(self, command, arguments):
        """The DAP response body for one request; raises DebugError with a one-line reason."""
        method = getattr(self, "do_" + command, None)
        if method is None:
            raise DebugError("the board's debugger does not handle %r" % command)
        return method(arguments)

    def do_start(self, arguments):
        self.started = True
        return {}

    def do_stop(self, arguments):
        """Disconnect: breakpoints go, a stopped cell runs on."""
        self.started = False
        self.points = {}
        self.lines = {}
        self.files = frozenset()
        self.exception_filters = ()
        if not self._command_if_stopped("continue"):
            self._changed()
        return {}

    def _changed(self, frames_with_breakpoints=False):
        """Breakpoints, filters or stepping changed while a cell runs: sys.monitoring follows."""
        monitor = self.monitor
        if monitor is not None:
            monitor.changed(frames_with_breakpoints)

    def do_dumpCell(self, arguments):
        path, code = arguments["path"], arguments["code"]
        linecache.cache[path] = (len(code), None, code.splitlines(True), path)
        return {"sourcePath": path}

    def do_setBreakpoints(self, arguments):
        path = arguments["source"]["path"]
        lines = {}
        answer = []
        for point in arguments.get("breakpoints") or []:
            line = int(point["line"])
            lines[line] = point.get("condition") or None
            answer.append({"verified": True, "line": line, "source": {"path": path}})
        key = self.canonic(path)
        if lines:
            self.points[key] = lines
        else:
            self.points.pop(key, None)
        named = dict(self.lines)
        named.pop(path, None)
        named.pop(key, None)
        if lines:
            named[path] = named[key] = lines
        self.lines = named
        self.files = frozenset(named)
        if self.monitor is not None:
            self._changed(frames_with_breakpoints=True)
        elif lines:
            self._trace_running_frames(path, key)
        return {"breakpoints": answer}

    def _trace_running_frames(self, *names):
        """A breakpoint set while the cell runs in that file hits (its frames' calls are past the hook)."""
        cell = self.cell
        if cell is None:
            return
        frame = sys._current_frames().get(cell.thread_ident)
        while frame is not None and frame is not self.botframe:
            if frame.f_code.co_filename in names and frame.f_trace is None:
                frame.f_trace = self.trace_dispatch
            frame = frame.f_back

    def do_setExceptionBreakpoints(self, arguments):
        self.exception_filters = tuple(arguments.get("filters") or ())
        self._changed()
        return {}

    def do_threads(self, arguments):
        return {"threads": [{"id": THREAD_ID, "name": "MainThread"}]}

    def do_stackTrace(self, arguments):
        with self._cond:
            frame = self.stopped_frame
            if frame is None:
                return {"stackFrames": [], "totalFrames": 0}
            stack = []
            while frame is not None and frame is not self.botframe:
                if not self.hidden(frame):
                    stack.append(frame)
                frame = frame.f_back
            frames = []
            for frame in stack:
                number = id(frame) & 0x7FFFFFFF
                self.frames[number] = frame
                filename = frame.f_code.co_filename
                frames.append(
                    {
                        "id": number,
                        "name": frame.f_code.co_name,
                        "line": frame.f_lineno,
                        "column": 1,
                        "source": {"path": filename, "name": os.path.basename(filename)},
                    }
                )
        start = int(arguments.get("startFrame") or 0)
        levels = int(arguments.get("levels") or 0)
        shown = frames[start : start + levels] if levels else frames[start:]
        return {"stackFrames": shown, "totalFrames": len(frames)}

    def _frame(self, number):
        frame = self.frames.get(number)
        if frame is None or self.stopped_frame is None:
            raise DebugError("no stopped frame %r" % (number,))
        return frame

    def do_scopes(self, arguments):
        frame = self._frame(arguments.get("frameId"))
        scopes = []
        for name, space in (("Locals", frame.f_locals), ("Globals", frame.f_globals)):
            reference = self.refs.add(("scope", space))
            scopes.append({"name": name, "variablesReference": reference, "expensive": False})
        return {"scopes": scopes}

    def do_variables(self, arguments):
        kind, value = self.refs.get(arguments.get("variablesReference"))
        if kind == "scope":
            items = self.grouped(value)
        elif kind == "group":
            items = value
        else:
            items = children(value[0], value[1])
        start = int(arguments.get("start") or 0)
        count = int(arguments.get("count") or 0) or PAGE
        return {"variables": [self.variable(n, v, e) for n, v, e in items[start : start + count]]}

    def grouped(self, space):
        """A scope's variables as debugpy lists them: dunder names, functions and classes in groups."""
        groups = {name: [] for name in GROUPS}
        plain = []
        for name, value in sorted(list(space.items()), key=lambda item: str(item[0])):
            dunder = name.startswith("__") and name.endswith("__")
            if not dunder and not self.shown_name(name):
                continue
            if dunder:
                groups["special variables"].append((name, value, name))
            elif isinstance(value, _FUNCTIONS):
                groups["function variables"].append((name, value, name))
            elif isinstance(value, type):
                groups["class variables"].append((name, value, name))
            else:
                plain.append((name, value, name))
        rows = [(name, _Group(members), "") for name, members in groups.items() if members]
        return rows + plain

    def shown_name(self, name):
        if name in _HIDDEN_NAMES or name in self.session.hidden_names:
            return False
        if name.startswith("_i") or (name.startswith("_") and name[1:2].isdigit()):
            return False
        return name not in ("_", "__", "___", "In", "Out", "exit", "quit")

    def variable(self, name, value, evaluate_name):
        if isinstance(value, _Group):
            reference = self.refs.add(("group", value.members))
            return {
                "name": name,
                "value": "",
                "type": "",
                "evaluateName": "",
                "variablesReference": reference,
            }
        reference = self.refs.add(("value", (value, evaluate_name))) if has_children(value) else 0
        entry = {
            "name": name,
            "value": safe_repr(value),
            "type": type(value).__name__,
            "evaluateName": evaluate_name,
            "variablesReference": reference,
        }
        if isinstance(value, (dict, list, tuple, set, frozenset)):
            entry["indexedVariables" if not isinstance(value, dict) else "namedVariables"] = len(value)
        return entry

    def do_inspectVariables(self, arguments):
        """The Variables panel while not stopped: the session's namespace."""
        with self._cond:
            if self.stopped_frame is None:
                self.refs.clear()
        namespace = self.session.namespace
        items = sorted((k, v) for k, v in list(namespace.items()) if self.shown_name(k))
        return {"variables": [self.variable(k, v, k) for k, v in items]}

    def _spaces(self, frame_id):
        if frame_id is not None and self.stopped_frame is not None:
            frame = self._frame(frame_id)
            return frame.f_globals, frame.f_locals
        return self.session.namespace, None

    def do_evaluate(self, arguments):
        expression = arguments.get("expression", "")
        frame_id = arguments.get("frameId")
        global_space, local_space = self._spaces(frame_id)
        try:
            try:
                code = compile(expression, "<debug console>", "eval")
            except SyntaxError:
                exec(compile(expression, "<debug console>", "exec"), global_space, local_space)
                return {"result": "", "variablesReference": 0}
            value = eval(code, global_space, local_space)
        except Exception as exc:
            raise DebugError("%s: %s" % (type(exc).__name__, exc))
        if frame_id is None:  # as debugpy without a frame: the value as str() gives it, None as ""
            return {"result": "" if value is None else "%s" % (value,), "variablesReference": 0}
        reference = self.refs.add(("value", (value, expression))) if has_children(value) else 0
        return {"result": safe_repr(value), "type": type(value).__name__, "variablesReference": reference}

    def do_richInspectVariables(self, arguments):
        from .formatters import format_bundle

        name = arguments.get("variableName", "")
        global_space, local_space = self._spaces(arguments.get("frameId"))
        try:
            value = eval(name, global_space, local_space)
        except Exception:
            return {"data": {}, "metadata": {}}
        data, metadata = format_bundle(value)
        return {"data": data, "metadata": {k: v for k, v in metadata.items() if k in data}}

    def do_copyToGlobals(self, arguments):
        frame = self._frame(arguments.get("srcFrameId"))
        source, target = arguments["srcVariableName"], arguments["dstVariableName"]
        space = frame.f_locals if source in frame.f_locals else frame.f_globals
        if source not in space:
            raise DebugError("no variable %r in that frame" % source)
        frame.f_globals[target] = space[source]
        return {"value": safe_repr(space[source]), "type": type(space[source]).__name__}

    def do_source(self, arguments):
        path = arguments.get("source", {}).get("path", "")
        lines = linecache.getlines(path)
        if not lines:
            raise DebugError("source unavailable")
        return {"content": "".join(lines)}

    def _command_if_stopped(self, command):
        with self._cond:
            if self.stopped_frame is None:
                return False
            self._command = command
            self._cond.notify_all()
            return True

    def do_continue(self, arguments):
        self._command_if_stopped("continue")
        return {"allThreadsContinued": True}

    def do_next(self, arguments):
        self._command_if_stopped("next")
        return {}

    def do_stepIn(self, arguments):
        self._command_if_stopped("stepIn")
        return {}

    def do_stepOut(self, arguments):
        self._command_if_stopped("stepOut")
        return {}

    def do_pause(self, arguments):
        """Stop the running cell at its next line: every frame of its thread is traced from now on."""
        cell = self.cell
        if cell is None or self.stopped_frame is not None:
            return {}
        frame = sys._current_frames().get(cell.thread_ident)
        self.set_step()
        self.stepping = True
        self.reason = "pause"
        if self.monitor is not None:
            self._changed()
            return {}
        while frame is not None and frame is not self.botframe:
            if not self.hidden(frame):
                frame.f_trace = self.trace_dispatch
            frame = frame.f_back
        return {}


_NOT_USER_DIRS = None


def _not_user_dirs():
    """Where code that is not the user's lives: the standard library, site-packages, rpyc (as debugpy's
    justMyCode, which JupyterLab's kernel uses): a raised exception there does not stop."""
    global _NOT_USER_DIRS
    if _NOT_USER_DIRS is None:
        import sysconfig

        paths = sysconfig.get_paths()
        dirs = set(paths.get(name) for name in ("stdlib", "platstdlib", "purelib", "platlib"))
        dirs.add(os.path.dirname(os.__file__))
        rpyc = sys.modules.get("rpyc")
        if rpyc is not None and getattr(rpyc, "__file__", None):
            dirs.add(os.path.dirname(os.path.abspath(rpyc.__file__)))
        dirs.add(AGENT_FILES)
        _NOT_USER_DIRS = tuple(os.path.join(d, "") for d in dirs if d)
    return _NOT_USER_DIRS


class _Monitor(object):
    """sys.monitoring (Python 3.12+) for one debugged cell: the events bdb would get, but only where needed.

    PY_START (and PY_RESUME) fire once per code object: a code object of a file with breakpoints gets
    LINE and return events of its own (set_local_events); any other one answers DISABLE and runs at full
    speed from then on. A LINE event that is not on a breakpoint line answers DISABLE too (not while
    stepping). Stepping gives the stopped frame's code and its callers' codes local events, and PY_START
    events of new frames are asked of bdb (stop_here). Every change (breakpoints, filters, a step, a
    continue) restarts the events, so that no DISABLE outlives the state it was decided in. RAISE (for
    "raised" exceptions) is global: it stops in any user code, not only in code with breakpoints.
    Events are process-wide: those of other threads are ignored (the cell's thread is the one debugged).
    """

    NAME = "rpyc_ikernel debugger"

    def __init__(self, debugger, tool):
        events = MONITORING.events
        self.debugger = debugger
        self.tool = tool
        self.thread = get_ident()
        self.codes = set()  # code objects given local events
        self.local = events.LINE | events.PY_RETURN | events.PY_YIELD
        self.lock = threading.RLock()  # callbacks of other threads may trace while the cell's ends
        self.active = True
        self.user_files = {}

    @classmethod
    def begin(cls, debugger):
        """A monitor on a free tool id (DEBUGGER_ID first), or None: then sys.settrace is used."""
        for tool in (MONITORING.DEBUGGER_ID, 1, 2, 3, 4, 5):
            if MONITORING.get_tool(tool) is not None:
                continue
            try:
                MONITORING.use_tool_id(tool, cls.NAME)
            except ValueError:
                continue
            monitor = cls(debugger, tool)
            for event, callback in monitor.callbacks():
                MONITORING.register_callback(tool, event, callback)
            monitor.changed()
            return monitor
        return None

    def callbacks(self):
        events = MONITORING.events
        return (
            (events.PY_START, self.on_start),
            (events.PY_RESUME, self.on_start),
            (events.LINE, self.on_line),
            (events.PY_RETURN, self.on_return),
            (events.PY_YIELD, self.on_return),
            (events.RAISE, self.on_raise),
            (events.PY_UNWIND, self.on_unwind),
        )

    def end(self):
        with self.lock:
            if not self.active:
                return
            self.active = False
            MONITORING.set_events(self.tool, 0)
            for code in self.codes:
                MONITORING.set_local_events(self.tool, code, 0)
            self.codes = set()
            for event, _ in self.callbacks():
                MONITORING.register_callback(self.tool, event, None)
            MONITORING.free_tool_id(self.tool)

    def trace(self, code):
        """Local events (lines, returns) for a code object: its frames are seen by bdb."""
        with self.lock:
            if self.active and code not in self.codes:
                self.codes.add(code)
                MONITORING.set_local_events(self.tool, code, self.local)

    def changed(self, frames_with_breakpoints=False):
        """Set the global events for the debugger's state and restart every DISABLEd one; with
        frames_with_breakpoints, the running frames of files that now have breakpoints are traced too
        (their PY_START is past)."""
        debugger = self.debugger
        with self.lock:
            if not self.active:
                return
            events = MONITORING.events
            wanted = events.PY_START | events.PY_RESUME
            if "raised" in debugger.exception_filters and debugger.started:
                wanted |= events.RAISE
            if debugger.stepping:  # a frame left by an exception: bdb's return event (global only)
                wanted |= events.PY_UNWIND
            if frames_with_breakpoints or debugger.stepping:
                frame = sys._current_frames().get(self.thread)
                while frame is not None and frame is not debugger.botframe:
                    if debugger.stepping or frame.f_code.co_filename in debugger.files:
                        if not debugger.hidden(frame):
                            self.trace(frame.f_code)
                    frame = frame.f_back
            MONITORING.set_events(self.tool, wanted)
            MONITORING.restart_events()

    def resumed(self, frame):
        """After a stop (on the cell's thread): a step traces the stopped frame and its callers; a
        continue leaves local events only on the code of files with breakpoints."""
        debugger = self.debugger
        with self.lock:
            if not self.active:
                return
            if debugger.stepping:
                while frame is not None and frame is not debugger.botframe:
                    if not debugger.hidden(frame):
                        self.trace(frame.f_code)
                    frame = frame.f_back
            else:
                for code in [c for c in self.codes if c.co_filename not in debugger.files]:
                    self.codes.discard(code)
                    MONITORING.set_local_events(self.tool, code, 0)
        self.changed()

    # ------------------------------------------------------------ callbacks (any thread)
    def on_start(self, code, offset):
        debugger = self.debugger
        if code.co_filename in debugger.files:
            self.trace(code)
            return MONITORING.DISABLE
        if not debugger.stepping:
            return MONITORING.DISABLE
        if get_ident() != self.thread:
            return None
        frame = sys._getframe(1)
        if not debugger.hidden(frame) and debugger.stop_here(frame):
            self.trace(code)
        return MONITORING.DISABLE  # decided for this step: the next command restarts the events

    def on_line(self, code, line):
        debugger = self.debugger
        if not debugger.stepping:
            lines = debugger.lines.get(code.co_filename)
            if not lines or line not in lines:
                return MONITORING.DISABLE
        if get_ident() != self.thread:
            return None
        debugger.dispatch_line(sys._getframe(1))
        return None

    def on_return(self, code, offset, value):
        debugger = self.debugger
        if not debugger.stepping:
            return MONITORING.DISABLE
        if get_ident() != self.thread:
            return None
        debugger.dispatch_return(sys._getframe(1), value)
        return None

    def on_unwind(self, code, offset, exception):
        debugger = self.debugger
        if debugger.stepping and get_ident() == self.thread and code in self.codes:
            debugger.dispatch_return(sys._getframe(1), None)

    def on_raise(self, code, offset, exception):
        debugger = self.debugger
        if (
            get_ident() != self.thread
            or exception is debugger._last_exception
            or isinstance(exception, (StopIteration, GeneratorExit))
            or "raised" not in debugger.exception_filters
            or not self.user_code(code)
        ):
            return
        frame = sys._getframe(1)
        if debugger.hidden(frame):
            return
        debugger._last_exception = exception
        debugger._stop(frame, "exception", exception)

    def user_code(self, code):
        filename = code.co_filename
        mine = self.user_files.get(filename)
        if mine is None:
            if filename.startswith("<"):
                mine = not filename.startswith("<frozen")
            else:
                mine = not os.path.abspath(filename).startswith(_not_user_dirs())
            self.user_files[filename] = mine
        return mine


def handle(session, command, arguments_json):
    """One DAP request for `session`'s debugger: JSON {"success", "body"} or {"success": false, "message"}."""
    debugger = session.debugger
    if debugger is None:
        debugger = session.debugger = BoardDebugger(session)
    try:
        body = debugger.handle(command, json.loads(arguments_json) if arguments_json else {})
    except DebugError as exc:
        return json.dumps({"success": False, "message": str(exc)})
    except Exception as exc:
        return json.dumps({"success": False, "message": "%s: %s" % (type(exc).__name__, exc)})
    return json.dumps({"success": True, "body": body}, default=repr)
