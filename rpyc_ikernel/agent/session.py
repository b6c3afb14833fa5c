"""A kernel's session on the board: its namespace, its running cell, the kernel's calls.

One Session per kernel, kept in SESSIONS by the kernel's id, so it outlives a dropped connection and
the kernel can reattach. A cell (CellRun) runs on the main thread of our server (its executor) or in
a thread of its own on a plain rpyc server; the kernel's run/poll calls take its output in batches
and return JSON (wire.py describes the answer), which rpyc sends by value.

Session and CellRun are assembled from small classes, one concern each. That also keeps a small
board's memory low: boot.py compiles one top-level statement at a time, and the compiler's peak
grows with the size of what it compiles.
"""

import ast
import builtins
import contextlib
import json
import linecache
import os
import sys
import threading
import time
import traceback

from . import wire
from .formatters import format_bundle
from .history import CellHistory
from .iostream import (
    OutputBatch,
    SentAnswers,
    StdinNotImplementedError,
    drain_fd_output,
    fd_capture,
    install_hooks,
    process_state,
)

MAX_PENDING = 4 * 1024 * 1024  # a cell that prints faster than the link drains waits above this
MAX_ORPHAN = 1024 * 1024  # output of background threads kept while no cell runs
MAX_ANSWER = 1024 * 1024  # output characters one answer carries (one per poll in flight waits for its ack)
FIRST_ANSWER = 64 * 1024  # ... the answer to run (it arrives sooner: polls ahead of a stream leave sooner)
AGENT_FILES = os.path.dirname(__file__)  # tracebacks leave out frames of files in here


class UsageError(Exception):
    """A magic used wrongly or not available on the board: shown as one line, like IPython's."""


UsageError.__module__ = "builtins"  # tracebacks say "UsageError: ..."


# --------------------------------------------------------------------------- compiling and errors


def compile_cell(source, filename):
    """(statements, last expression or None) compiled like IPython does a cell; registers the
    source with linecache so tracebacks show the lines."""
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    tree = ast.parse(source, filename, "exec")
    last = None
    if tree.body and isinstance(tree.body[-1], ast.Expr):
        last = ast.Expression(tree.body.pop().value)
    body = compile(tree, filename, "exec", TOP_LEVEL_AWAIT, dont_inherit=True)
    tail = compile(last, filename, "eval", TOP_LEVEL_AWAIT, dont_inherit=True) if last is not None else None
    return body, tail


TOP_LEVEL_AWAIT = getattr(ast, "PyCF_ALLOW_TOP_LEVEL_AWAIT", 0)  # Python 3.8+: `await` in a cell
CO_COROUTINE = 0x0080  # inspect.CO_COROUTINE: the code of a cell that awaits


def run_compiled(code, namespace):
    """Run a code object of compile_cell; a cell with top-level `await` runs on an asyncio loop, as
    IPython's autoawait does (one loop per board process, kept between cells)."""
    value = eval(code, namespace)
    if code.co_flags & CO_COROUTINE:
        value = _event_loop().run_until_complete(value)
    return value


_loop = []


def _event_loop():
    import asyncio

    if not _loop or _loop[0].is_closed():
        _loop[:] = [asyncio.new_event_loop()]
    return _loop[0]


def last_statement_silenced(code):
    """IPython hides the result when the cell's last code line ends with ';'."""
    for line in reversed(code.splitlines()):
        stripped = line.split("#", 1)[0].strip() if "#" in line else line.strip()
        if stripped:
            return stripped.endswith(";")
    return False


def format_error(exc_type, exc, tb):
    """ename/evalue/traceback with only the user's frames, like IPython shows a cell's error."""
    if isinstance(exc, UsageError):
        lines = ["UsageError: %s" % exc]
    else:
        report = traceback.TracebackException(exc_type, exc, tb)
        _keep_user_frames(report, exc, tb)
        lines = list(report.format())
    return {
        "status": "error",
        "ename": exc_type.__name__,
        "evalue": str(exc),
        "traceback": [line.rstrip("\n") for line in lines],
    }


def _keep_user_frames(report, exc, tb):
    """Remove the agent's and the server's frames from a TracebackException and its chained ones.

    Hidden are frames of the agent's files, of our server's file (its interrupt signal handler
    raises KeyboardInterrupt on top of the user's frame), and frames whose function sets
    ``__tracebackhide__ = True`` (IPython's and pytest's convention).
    """
    hidden_files = _hidden_files()
    pending = [(report, exc, tb)]
    seen = set()
    while pending:
        item, error, error_tb = pending.pop()
        if item is None or id(item) in seen:
            continue
        seen.add(id(item))
        frames = [frame for frame, _ in traceback.walk_tb(error_tb)]
        if len(frames) == len(item.stack):  # one summary per frame, in order: the frames can be asked
            kept = [s for s, f in zip(item.stack, frames) if not _hidden_frame(f, hidden_files)]
        else:
            kept = [s for s in item.stack if not _hidden_file(s.filename, hidden_files)]
        item.stack = traceback.StackSummary.from_list(kept)
        for chained in ("__cause__", "__context__"):
            inner = getattr(error, chained, None)
            pending.append((getattr(item, chained), inner, getattr(inner, "__traceback__", None)))


def _hidden_files():
    """The files of our own code running in this process: the agent's directory and our server."""
    files = set()
    executor = sys.modules.get(wire.EXECUTOR_MODULE)
    submit = getattr(executor, "submit", None)
    code = getattr(getattr(submit, "__func__", submit), "__code__", None)
    if code is not None:
        files.add(code.co_filename)
    return files


def _hidden_file(filename, hidden_files):
    return filename.startswith(AGENT_FILES + "/") or filename in hidden_files


def _hidden_frame(frame, hidden_files):
    code = frame.f_code
    if _hidden_file(code.co_filename, hidden_files):
        return True
    return "__tracebackhide__" in code.co_varnames and bool(frame.f_locals.get("__tracebackhide__"))


def show_figures(skip=None):
    """Show open pyplot figures at the end of a cell, like IPython's inline backend (if pyplot is in use)."""
    if "matplotlib.pyplot" in sys.modules:
        from .inline import show_figures as show

        show(skip=skip)


# --------------------------------------------------------------------------- one cell


class Interruptible(object):
    """How a running cell takes an interrupt: at once in user code, later inside the agent's waits."""

    def __init__(self):
        self.interruptible = False  # True only while user code runs
        self.interrupt_event = threading.Event()
        self.main_thread_mode = False
        self.thread_ident = None
        self.waiting = 0  # > 0 while the cell waits inside the agent (sleep, input(), a shell command)
        self.interrupt_reason = None  # who interrupted, when not the notebook (the board's terminal)

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

    def check_interrupt(self):
        """Raise KeyboardInterrupt once for an interrupt that arrived while the cell was waiting."""
        if self.interrupt_event.is_set():
            self.interrupt_event.clear()
            reason, self.interrupt_reason = self.interrupt_reason, None
            raise KeyboardInterrupt(*([reason] if reason else []))


class CellRun(Interruptible):
    """One cell's code and its progress; a job for the main-thread executor or a worker thread."""

    def __init__(self, session, code, filename, allow_stdin, silent, count=None, raw=None):
        Interruptible.__init__(self)
        self.session = session
        self.code = code
        self.filename = filename
        self.allow_stdin = allow_stdin
        self.silent = silent
        self.count = count  # the execution count when the cell is stored in the history, else None
        self.raw = code if raw is None else raw  # as the user typed it (magics not rewritten)

    def __call__(self):
        self.thread_ident = threading.get_ident()
        reply = None
        state = process_state()
        state.sinks[self.thread_ident] = self.session
        capture = fd_capture()
        captured = False
        try:
            captured = capture.begin(self.session)  # fds 1/2: children's and C code's output
            reply = self._execute()
        except BaseException as exc:  # an interrupt that landed outside user code
            reply = format_error(type(exc), exc, None)
        finally:
            self.interruptible = False
            if captured:
                capture.end(self.session)
            state.sinks.pop(self.thread_ident, None)
            self.session.finish(self, reply)

    def _execute(self):
        ns = self.session.namespace
        history = self.session.history
        if self.count is not None:  # as IPython: stored before it runs, a cell that fails to parse too
            history.record_input(ns, self.count, self.code, self.raw)
        try:
            body, tail = compile_cell(self.code, self.filename)
        except (SyntaxError, ValueError, OverflowError) as exc:
            return format_error(type(exc), exc, None)
        value = None
        debugger = self.session.debugger
        if debugger is not None and not debugger.started:
            debugger = None
        try:
            self.interruptible = True
            self.check_interrupt()
            if debugger is not None:  # see debugger.py: traced only while the debugger is started
                here = sys._getframe()
                debugger.run(self, here, lambda: run_compiled(body, ns))
                if tail is not None:
                    value = debugger.run(self, here, lambda: run_compiled(tail, ns))
            else:
                run_compiled(body, ns)
                if tail is not None:
                    value = run_compiled(tail, ns)
            self.interruptible = False
        except BaseException:
            self.interruptible = False
            exc_type, exc, tb = sys.exc_info()
            show_figures()  # like IPython's inline backend, figures show even when the cell fails
            return format_error(exc_type, exc, tb)
        reply = {"status": "ok"}
        shown = value is not None and not self.silent and not last_statement_silenced(self.code)
        show_figures(skip=value if shown else None)
        if shown:
            history.record_output(ns, self.count, value)
            data, metadata = format_bundle(value)
            reply["result"] = {"data": data, "metadata": metadata}
        return reply


# --------------------------------------------------------------------------- the session


def display(*objs, **kwargs):
    """Show objects in the running cell's output, like IPython.display.display."""
    from .display import display as show

    return show(*objs, **kwargs)


def update_display(obj, display_id, **kwargs):
    """Replace the output shown under display_id, like IPython.display.update_display."""
    from .display import update_display as update

    return update(obj, display_id, **kwargs)


def clear_output(wait=False):
    """Clear the cell's output (wait=True: when the next output arrives), like IPython's."""
    from .display import clear_output as clear

    return clear(wait)


class SessionOutput(object):
    """A session's output: written by its cell's thread (shielded from interrupts), batched for the kernel."""

    def _own_cell(self):
        """The running cell if the caller is its thread (then locked work must be shielded)."""
        cell = self.cell
        if cell is not None and cell.thread_ident == threading.get_ident():
            return cell
        return None

    def write_stream(self, name, text, block):
        if not text:
            return
        cell = self._own_cell()
        if cell is None:
            return self._write_stream(name, text, block)
        # cell.shielded(), written out: this runs twice for every print() of a cell
        cell.waiting += 1
        try:
            drain_fd_output()  # a child's output written before this text shows before it
            self._write_stream(name, text, block)
        finally:
            cell.waiting -= 1
        if cell.interruptible:
            cell.check_interrupt()

    def _write_stream(self, name, text, block):
        with self._cond:
            if block:
                while self._output.size > MAX_PENDING and self.cell is not None:
                    self._cond.wait(0.1)
            elif self._output.size > MAX_ORPHAN:
                return
            self._output.add_stream(name, text)

    def emit(self, event, urgent=False):
        """Queue an output event (wire.display_event, ...) for the kernel; urgent: send it at once."""
        cell = self._own_cell()
        if cell is None:
            with self._cond:
                return self._output.add_event(event, urgent)
        with cell.shielded():
            drain_fd_output()
            with self._cond:
                self._output.add_event(event, urgent)


class SessionInput(object):
    """input() and getpass() in a session's cell, answered by the kernel's stdin channel."""

    def request_input(self, prompt, password):
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
                # An interrupt beats an answer that came with it: on Ctrl-C the kernel interrupts, then
                # ends its stdin request with "no input" (EOF); both may be here before this thread
                # wakes up (a busy board), and the user asked for KeyboardInterrupt, not EOFError.
                cell.check_interrupt()
                answer = self._input_answer
            finally:
                self._input_waiting = False
                self._input_prompt = None
                self._input_answer = None
        if answer.get("eof"):
            raise EOFError("EOF when reading a line")
        return answer.get("value", "")

    def provide_input(self, value, eof=False):
        with self._cond:
            self._input_answer = {"value": value, "eof": eof}
            self._cond.notify_all()


class SessionInterrupt(object):
    """Stopping a session's running cell, from the kernel's interrupt request."""

    def interrupt(self, cell_id=None):
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
        executor = sys.modules.get(wire.EXECUTOR_MODULE)
        if cell.main_thread_mode and executor is not None:
            if not executor.interrupt(cell):
                cell.interrupt_event.set()
        elif cell.thread_ident is not None:
            _raise_in_thread(cell.thread_ident, KeyboardInterrupt)
        return True


class SessionQueries(object):
    """The kernel's questions about a session's namespace: completion, inspection, user_expressions."""

    def complete(self, code, cursor_pos):
        from .completer import complete

        return json.dumps(complete(self.namespace, code, cursor_pos))

    def inspect(self, code, cursor_pos, detail_level=0):
        from .oinspect import inspect_object

        return json.dumps(inspect_object(self.namespace, code, cursor_pos, detail_level))

    def evaluate(self, expressions):
        """user_expressions of an execute_request: each evaluated in the namespace, as bundles."""
        results = {}
        for name, source in json.loads(expressions).items():
            try:
                data, metadata = format_bundle(eval(source, self.namespace))
                results[name] = {"status": "ok", "data": data, "metadata": metadata}
            except Exception:
                exc_type, exc, tb = sys.exc_info()
                results[name] = format_error(exc_type, exc, None)
        return json.dumps(results)


class SessionDebug(object):
    """The kernel's debug requests (DAP bodies, see debugger.py), served beside the running cell."""

    debugger = None  # made on the first request: a session never debugged loads nothing

    def debug(self, command, arguments):
        from .debugger import handle

        return handle(self, command, arguments)


class Session(SessionOutput, SessionInput, SessionInterrupt, SessionQueries, SessionDebug):
    """One kernel's namespace and output queue on the board; outlives a dropped connection."""

    def __init__(self, session_id):
        self.session_id = session_id
        self.namespace = {
            "__name__": "__main__",
            "__builtins__": builtins,
            "display": display,
            "update_display": update_display,
            "clear_output": clear_output,
            "get_ipython": self.get_ipython,
        }
        self.history = CellHistory(self.namespace)
        self.hidden_names = frozenset(self.namespace)  # what %who and %reset leave alone
        self.payloads = {}  # the running cell's reply payloads by source (set_next_input)
        self.figure_format = "png"  # or "retina" (%config InlineBackend.figure_format)
        self.cell = None
        self._shell = None
        self._cond = threading.Condition()
        self._output = OutputBatch(self._cond)
        self._reply = None
        self._input_answer = None
        self._input_prompt = None
        self._input_waiting = False
        self.requests = 0  # calls of run/poll: how many round trips cells cost
        self.cell_id = None  # the kernel's id of the current or last cell
        self._seq = 0  # numbers the answers to run/poll
        self._answers = SentAnswers()  # answers until the kernel acknowledges them
        self._earlier = None  # what the kernel missed of the cell before, for the next answer
        self._polls = 0  # numbers the run/poll calls: only the newest may take output

    def get_ipython(self):
        """The board's stand-in for IPython's shell (what `!` and `%` lines call)."""
        if self._shell is None:
            from .magics import BoardShell

            self._shell = BoardShell(self)
        return self._shell

    # ------------------------------------------------------------ the kernel's calls
    def run(
        self,
        code,
        filename,
        wait,
        allow_stdin=False,
        silent=False,
        cell_id=None,
        count=None,
        raw=None,
        ack=None,
    ):
        """Start a cell, then wait up to `wait` seconds for it: a quick cell costs one round trip.

        count: the cell's execution count when it is stored in the history (In, Out, _N), else None;
        raw: the cell as typed, when `code` is its rewritten form (what %history shows).

        A repeated cell_id means the kernel lost our answer to this very call: the cell is not started
        twice, the unacknowledged answer is sent again instead. `ack` is the seq of the last answer
        the kernel received (None: it does not say); what it missed of the cell before (after a
        stall it gave up on, or a cell that ran once the board woke up) comes with the first answer
        as "earlier" instead of being dropped.
        """
        self.requests += 1
        with self._cond:
            if cell_id is not None and cell_id == self.cell_id:
                return self._poll(wait, None)
            if self.cell is not None:
                return json.dumps({"busy": True, "events": [], "done": False})
            self._earlier = self._missed_by_kernel(ack)
            self._reply = None
            self._answers.clear()
            self.cell_id = cell_id
            cell = CellRun(self, code, filename, allow_stdin, silent, count, raw)
            self.payloads = {}
            self.cell = cell
        process_state().last_session = self
        executor = sys.modules.get(wire.EXECUTOR_MODULE)
        if executor is not None:
            cell.main_thread_mode = True
            executor.submit(cell)
        else:
            threading.Thread(target=cell, name="rpyc_ikernel cell", daemon=True).start()
        with self._cond:
            return self._poll(wait, None, limit=FIRST_ANSWER)

    def _missed_by_kernel(self, ack):
        """The previous cell's output and reply the kernel never received, or None (caller holds _cond)."""
        if ack is None:
            return None
        events, reply = [], None
        for text in self._answers.missed(ack):  # answers that were lost
            lost = json.loads(text)
            earlier = lost.get("earlier") or {}
            events.extend(earlier.get("events", []) + lost.get("events", []))
            reply = lost.get("reply") or reply
        if self._reply is not None or events:  # what came after the last answer belongs to that cell too
            events.extend(self._output.take())
            reply = self._reply if self._reply is not None else reply
        if not events and reply is None:
            return None
        return {"cell_id": self.cell_id, "events": events, "reply": reply}

    def poll(self, wait, ack=None, ahead=False, link=None):
        """Wait up to `wait` seconds for output worth sending or the cell's end; return them as JSON.

        `ack` is the seq of the last answer the kernel received; if it is not our last answer, that
        answer was lost with a dropped connection and is sent again, so no output is ever lost.
        `ahead`: the kernel sent this poll behind another one on the same link (`link`: the kernel's
        number for it), whose answer it has not received yet: output streams in (iostream.SentAnswers).
        """
        self.requests += 1
        with self._cond:
            return self._poll(wait, ack, ahead, link)

    def _poll(self, wait, ack, ahead=False, link=None, limit=MAX_ANSWER):
        if ahead and link != self._answers.link:  # late, from a dropped link: a newer one polls now
            return json.dumps(
                {"events": [], "done": False, "seq": self._seq, "running": self.cell is not None}
            )
        lost = self._answers.resend(ack, ahead)
        if lost is not None:
            return lost
        if not ahead:
            self._answers.link = link
            self._polls += 1
            self._cond.notify_all()  # an older poll still waiting lost its link: it gives way to this one
        mine = self._polls
        deadline = time.monotonic() + wait
        while ahead and self._answers.waiting and self._polls == mine and time.monotonic() < deadline:
            self._cond.wait(deadline - time.monotonic())  # a board serving requests at once: answers in order
        self._answers.waiting += 1
        try:
            return self._wait_and_answer(deadline, mine, ahead, limit)
        finally:
            self._answers.waiting -= 1

    def _wait_and_answer(self, deadline, mine, ahead, limit):
        while self._reply is None and not self._input_waiting and self._polls == mine:
            if ahead and self.cell is None and not self._output.events:
                break  # the cell ended with the answer before this one
            now = time.monotonic()
            if self._output.events:
                due = self._output.due_at()
                if now >= due:
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
        events = self._output.take(limit)
        done = self._reply is not None and not self._output.events  # the reply after all output
        self._seq += 1
        message = {"events": events, "done": done, "seq": self._seq, "running": running}
        if not done and self._output.streaming():
            message["more"] = True  # output streams in: the kernel keeps a poll on its way ahead
        if self._earlier is not None:
            message["earlier"], self._earlier = self._earlier, None
        if done:
            message["reply"] = self._reply
            self._reply = None
        elif self._input_waiting and self._input_prompt is not None:
            message["input"] = self._input_prompt
            self._input_prompt = None
        self._cond.notify_all()
        text = json.dumps(message)
        self._answers.add(self._seq, text)
        return text

    def finish(self, cell, reply):
        with self._cond:
            if self.cell is cell:
                self.cell = None
            self._reply = reply or {"status": "ok"}
            if self.payloads:
                self._reply["payload"] = list(self.payloads.values())
                self.payloads = {}
            self._input_waiting = False
            self._cond.notify_all()


def _raise_in_thread(thread_ident, exc_type):
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


# --------------------------------------------------------------------------- entry points

SESSIONS = {}


def attach(session_id):
    """The session of this id, created on first use; reattaching keeps its namespace."""
    install_hooks()
    from .shim import install_import_hooks

    install_import_hooks()
    session = SESSIONS.get(session_id)
    if session is None:
        session = Session(session_id)
        SESSIONS[session_id] = session
    return session


def connect(session_id=None):
    """Everything a new connection needs, in one answer: (agent package, board_info JSON, the
    session's methods in wire.SESSION_METHODS order; none without session_id).

    Bound methods and modules reach the kernel as netrefs rpyc needs no extra round trip for.
    """
    methods = ()
    if session_id is not None:
        session = attach(session_id)
        methods = tuple(getattr(session, name) for name in wire.SESSION_METHODS)
    return sys.modules[__name__.rpartition(".")[0]], board_info(), methods


def board_info():
    """What the kernel shows about the board: Python, platform, process."""
    state = process_state()
    system, node, release, machine = _uname()
    libc = _libc()
    return json.dumps(
        {
            "python": "%d.%d.%d" % sys.version_info[:3],
            "implementation": _IMPLEMENTATIONS.get(sys.implementation.name, sys.implementation.name),
            "platform": "-".join([system, release, machine] + (["with-" + libc] if libc else [])),
            "machine": machine,
            "hostname": node,
            "pid": os.getpid(),
            "main_thread_executor": sys.modules.get(wire.EXECUTOR_MODULE) is not None,
            "debugger": hasattr(sys, "settrace") and hasattr(sys, "_current_frames"),
            "boot_id": state.boot_id,
            "agent_loaded": state.started,
            "time": time.time(),
        }
    )


_IMPLEMENTATIONS = {"cpython": "CPython", "pypy": "PyPy", "micropython": "MicroPython"}


def _uname():
    """(system, node, release, machine), as platform.uname() has them, without importing platform."""
    try:
        uname = os.uname()
    except AttributeError:  # Windows
        return sys.platform, os.environ.get("COMPUTERNAME", ""), "", ""
    return uname.sysname, uname.nodename, uname.release, uname.machine


def _libc():
    """'glibc2.36' where the C library says so (platform.platform()'s suffix), else ''."""
    try:
        name, _, version = (os.confstr("CS_GNU_LIBC_VERSION") or "").partition(" ")
    except (AttributeError, ValueError, OSError):
        return ""
    return name + version


def ping():
    """The cheapest round trip through the agent: what the kernel times as the link's latency."""
    return ""
