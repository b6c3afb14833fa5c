"""The board's debugger: breakpoints, stepping and variables for a session's cells (bdb, stdlib only).

The cell runs on its own thread (the server's main thread, or a worker on a plain server). While the
debugger is started, that thread runs under this Bdb: frames are traced line by line only when their
file has a breakpoint (or while stepping), so code without breakpoints runs at nearly full speed; with
the debugger off nothing is installed. At a stop the cell's thread waits here, and the kernel's
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
        self.points = {}
        self.files = frozenset()  # canonic file name -> {line: condition or None}
        self.files = frozenset()  # the file names of self.points, as code objects have them
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
        """Call `execute` (runs a compiled part of `cell`, see session.run_compiled: top-level await
        included) under this debugger; frame: the caller, where tracing ends."""
        self.cell = cell
        self.reset()
        self.botframe = frame
        self._set_stopinfo(frame, None, -1)  # run until a breakpoint
        self.stepping = False
        sys.settrace(self._call_hook)
        try:
            return execute()
        except Exception as exc:
            self._stop_uncaught(exc)
            raise
        finally:
            sys.settrace(None)
            self.cell = None
            self.stopped_frame = None

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
            from .session import _hidden_files

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
        sys.settrace(None)  # nothing runs on from here: the stop only shows the frames
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
        while f is not None and f is not self.botframe:  # so that stepping out reaches the callers
            f.f_trace = self.trace_dispatch
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
                sys.settrace(None)
                f = frame
                while f is not None and f is not self.botframe:
                    f.f_trace = None
                    f = f.f_back

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
        self.files = frozenset()
        self.exception_filters = ()
        self._command_if_stopped("continue")
        return {}

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
        self.files = frozenset(self.points) | frozenset([path] if lines else [])
        return {"breakpoints": answer}

    def do_setExceptionBreakpoints(self, arguments):
        self.exception_filters = tuple(arguments.get("filters") or ())
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
        while frame is not None and frame is not self.botframe:
            if not self.hidden(frame):
                frame.f_trace = self.trace_dispatch
            frame = frame.f_back
        return {}


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
