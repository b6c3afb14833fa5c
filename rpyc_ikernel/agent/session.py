"""A kernel's session on the board: its namespace, its running cell, the kernel's calls.

One Session per kernel, kept in SESSIONS by the kernel's id, so it outlives a dropped connection and
the kernel can reattach. A cell (CellRun) runs on the main thread of our server (its executor) or in
a thread of its own on a plain rpyc server; the kernel's run/poll calls take its output in batches
and return JSON (wire.py describes the answer), which rpyc sends by value.

A Session is composed of parts that own their state (output, stdin, queries, debugging); a CellRun
is an Interruptible with its code. Small classes also keep a small board's memory low: boot.py
compiles one top-level statement at a time, and the compiler's peak grows with what it compiles.
"""

import builtins
import contextlib
import json
import os
import sys
import threading
import time

from . import wire
from .compiling import compile_cell, last_statement_silenced, run_compiled
from .errors import format_error
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
        """Mark a wait that checks for interrupts itself (check_interrupt), so interrupt() sets a
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

    def interrupt(self):
        """Stop this cell with KeyboardInterrupt; True when it got a flag it checks itself (then the
        session wakes its waits).

        A cell that waits inside the agent (input(), a shell command, sleep on a plain server) or has
        not started its user code yet gets a flag it checks itself. Otherwise our server signals its
        main thread (stops sleeps and blocking I/O too); on a plain server the exception is injected
        into the cell's thread (stops Python code; a blocking C call ends first).
        """
        if self.waiting or not self.interruptible:
            self.interrupt_event.set()
            return True
        executor = sys.modules.get(wire.EXECUTOR_MODULE)
        if self.main_thread_mode and executor is not None:
            if not executor.interrupt(self):
                self.interrupt_event.set()
        elif self.thread_ident is not None:
            _raise_in_thread(self.thread_ident, KeyboardInterrupt)
        return False

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
        self.payloads = {}  # its reply's payloads by source (set_next_input)

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
            self.session.exchange.finish(self, reply)

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


class Output(object):
    """A session's output part: its batch of events for the kernel, written by the cell's thread
    (shielded from interrupts) and by other threads (kept up to MAX_ORPHAN while no cell runs)."""

    def __init__(self, session):
        self.exchange = session.exchange  # its cell is the one running
        self.cond = session.cond
        self.batch = OutputBatch(session.cond)

    def _own_cell(self):
        """The running cell if the caller is its thread (then locked work must be shielded)."""
        cell = self.exchange.cell
        if cell is not None and cell.thread_ident == threading.get_ident():
            return cell
        return None

    def write_stream(self, name, text, block):
        """Text of stdout/stderr; block: wait while the kernel is behind (the cell's own writes)."""
        if not text:
            return
        cell = self._own_cell()
        if cell is None:
            return self.write_unshielded(name, text, block)
        # cell.shielded(), written out: this runs twice for every print() of a cell
        cell.waiting += 1
        try:
            drain_fd_output()  # a child's output written before this text shows before it
            self.write_unshielded(name, text, block)
        finally:
            cell.waiting -= 1
        if cell.interruptible:
            cell.check_interrupt()

    def write_unshielded(self, name, text, block):
        with self.cond:
            if block:
                while self.batch.size > MAX_PENDING and self.exchange.cell is not None:
                    self.cond.wait(0.1)
            elif self.batch.size > MAX_ORPHAN:
                return
            self.batch.add_stream(name, text)

    def emit(self, event, urgent=False):
        """Queue an output event (wire.display_event, ...) for the kernel; urgent: send it at once."""
        cell = self._own_cell()
        if cell is None:
            with self.cond:
                return self.batch.add_event(event, urgent)
        with cell.shielded():
            drain_fd_output()
            with self.cond:
                self.batch.add_event(event, urgent)


class Stdin(object):
    """A session's stdin part: input() and getpass() in its cell, answered by the kernel's stdin channel."""

    def __init__(self, session):
        self.exchange = session.exchange  # its cell is the one running
        self.cond = session.cond
        self.waiting = False  # a cell waits for an answer (the kernel's poll returns at once then)
        self.prompt = None  # {"prompt", "password"} until a poll took it to the kernel
        self.answer = None  # {"value", "eof"} from provide_input

    def request_input(self, prompt, password):
        """Ask the user through the kernel's stdin channel; wait for the answer (interruptible)."""
        cell = self.exchange.cell
        if cell is None or not cell.allow_stdin:
            what = "getpass()" if password else "input()"
            raise StdinNotImplementedError(
                "%s was called, but this frontend does not support input requests (allow_stdin is off)" % what
            )
        with cell.waiting_inside_agent(), self.cond:
            self.answer = None
            self.prompt = {"prompt": prompt, "password": password}
            self.waiting = True
            self.cond.notify_all()
            try:
                while self.answer is None:
                    cell.check_interrupt()
                    self.cond.wait(0.05)
                # An interrupt beats an answer that came with it: on Ctrl-C the kernel interrupts, then
                # ends its stdin request with "no input" (EOF); both may be here before this thread
                # wakes up (a busy board), and the user asked for KeyboardInterrupt, not EOFError.
                cell.check_interrupt()
                answer = self.answer
            finally:
                self.waiting = False
                self.prompt = None
                self.answer = None
        if answer.get("eof"):
            raise EOFError("EOF when reading a line")
        return answer.get("value", "")

    def provide_input(self, value, eof=False):
        with self.cond:
            self.answer = {"value": value, "eof": eof}
            self.cond.notify_all()

    def take_prompt(self):
        """The prompt of a waiting input() for the kernel, once (caller holds cond); else None."""
        if not self.waiting or self.prompt is None:
            return None
        prompt, self.prompt = self.prompt, None
        return prompt


class Exchange(object):
    """A session's exchange part: the kernel's run and poll calls, and the cell they start.

    run starts a cell (on the server's main thread, or a thread of its own) and poll hands the
    kernel the cell's output in numbered answers; an answer the kernel did not acknowledge is sent
    again, and what it missed of the cell before comes with the next one, so no output is lost.
    """

    def __init__(self, session):
        self.session = session
        self.cond = session.cond
        self.cell = None  # the running CellRun
        self.cell_id = None  # the kernel's id of the current or last cell
        self.requests = 0  # calls of run/poll: how many round trips cells cost
        self._reply = None  # the finished cell's reply until a poll takes it
        self._seq = 0  # numbers the answers to run/poll
        self._answers = SentAnswers()  # answers until the kernel acknowledges them
        self._earlier = None  # what the kernel missed of the cell before, for the next answer
        self._polls = 0  # numbers the run/poll calls: only the newest may take output

    def interrupt(self, cell_id=None):
        """Stop the running cell with KeyboardInterrupt; True when a cell was running.

        With cell_id, only that cell: an interrupt that arrives late never hits the next cell.
        """
        cell = self.cell
        if cell is None or (cell_id is not None and cell_id != self.cell_id):
            return False
        if cell.interrupt():
            with self.cond:
                self.cond.notify_all()
        return True

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
        with self.cond:
            if cell_id is not None and cell_id == self.cell_id:
                return self._poll(wait, None)
            if self.cell is not None:
                return json.dumps({"busy": True, "events": [], "done": False})
            self._earlier = self._missed_by_kernel(ack)
            self._reply = None
            self._answers.clear()
            self.cell_id = cell_id
            cell = CellRun(self.session, code, filename, allow_stdin, silent, count, raw)
            self.cell = cell
        process_state().last_session = self.session
        executor = sys.modules.get(wire.EXECUTOR_MODULE)
        if executor is not None:
            cell.main_thread_mode = True
            executor.submit(cell)
        else:
            threading.Thread(target=cell, name="rpyc_ikernel cell", daemon=True).start()
        with self.cond:
            return self._poll(wait, None, limit=FIRST_ANSWER)

    def _missed_by_kernel(self, ack):
        """The previous cell's output and reply the kernel never received, or None (caller holds cond)."""
        if ack is None:
            return None
        events, reply = [], None
        for text in self._answers.missed(ack):  # answers that were lost
            lost = json.loads(text)
            earlier = lost.get("earlier") or {}
            events.extend(earlier.get("events", []) + lost.get("events", []))
            reply = lost.get("reply") or reply
        if self._reply is not None or events:  # what came after the last answer belongs to that cell too
            events.extend(self.session.output.batch.take())
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
        with self.cond:
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
            self.cond.notify_all()  # an older poll still waiting lost its link: it gives way to this one
        mine = self._polls
        deadline = time.monotonic() + wait
        while ahead and self._answers.waiting and self._polls == mine and time.monotonic() < deadline:
            self.cond.wait(deadline - time.monotonic())  # a board serving requests at once: answers in order
        self._answers.waiting += 1
        try:
            return self._wait_and_answer(deadline, mine, ahead, limit)
        finally:
            self._answers.waiting -= 1

    def _wait_and_answer(self, deadline, mine, ahead, limit):
        while self._reply is None and not self.session.stdin.waiting and self._polls == mine:
            if ahead and self.cell is None and not self.session.output.batch.events:
                break  # the cell ended with the answer before this one
            now = time.monotonic()
            if self.session.output.batch.events:
                due = self.session.output.batch.due_at()
                if now >= due:
                    break
                timeout = min(due, deadline) - now
            else:
                timeout = deadline - now
            if timeout <= 0:
                break
            self.cond.wait(timeout)
        running = self.cell is not None
        if self._polls != mine:  # a newer poll takes the output; this answer goes to a dead link
            return json.dumps({"events": [], "done": False, "seq": self._seq, "running": running})
        events = self.session.output.batch.take(limit)
        done = self._reply is not None and not self.session.output.batch.events  # the reply after all output
        self._seq += 1
        message = {"events": events, "done": done, "seq": self._seq, "running": running}
        if not done and self.session.output.batch.streaming():
            message["more"] = True  # output streams in: the kernel keeps a poll on its way ahead
        if self._earlier is not None:
            message["earlier"], self._earlier = self._earlier, None
        if done:
            message["reply"] = self._reply
            self._reply = None
        else:
            prompt = self.session.stdin.take_prompt()
            if prompt is not None:
                message["input"] = prompt
        self.cond.notify_all()
        text = json.dumps(message)
        self._answers.add(self._seq, text)
        return text

    def finish(self, cell, reply):
        with self.cond:
            if self.cell is cell:
                self.cell = None
            self._reply = reply or {"status": "ok"}
            if cell.payloads:
                self._reply["payload"] = list(cell.payloads.values())
            self.session.stdin.waiting = False
            self.cond.notify_all()


class Session(object):
    """One kernel's namespace and cell on the board; outlives a dropped connection.

    The session keeps the namespace; parts own the rest, each its own state: `exchange` (run, poll,
    interrupt: the running cell), `output`, `stdin`, and `debugger` (debugger.py's, made on the first
    debug request). The kernel calls the names of wire.SESSION_METHODS on the session: the parts'
    own methods bound below, or methods that hand the call on (the questions go to queries.py,
    which loads on the first). A new capability is one more part and one more name there.
    """

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
        self.figure_format = "png"  # or "retina" (%config InlineBackend.figure_format)
        self.cond = threading.Condition()  # guards the parts' state; poll waits on it
        self._shell = None
        self.exchange = Exchange(self)
        self.output = Output(self)
        self.stdin = Stdin(self)
        # The kernel's calls (wire.SESSION_METHODS) a part answers, and what iostream.py, display()
        # and the magics call: the parts' own methods, so no call pays a hop (print() is hot).
        self.run = self.exchange.run
        self.poll = self.exchange.poll
        self.interrupt = self.exchange.interrupt
        self.provide_input = self.stdin.provide_input
        self.write_stream = self.output.write_stream
        self._write_stream = self.output.write_unshielded
        self.emit = self.output.emit
        self.request_input = self.stdin.request_input

    debugger = None  # the debug part: debugger.py's BoardDebugger, made on the first debug request

    @property
    def cell(self):
        """The running CellRun, or None."""
        return self.exchange.cell

    @property
    def requests(self):
        """Calls of run and poll so far: how many round trips cells cost."""
        return self.exchange.requests

    def get_ipython(self):
        """The board's stand-in for IPython's shell (what `!` and `%` lines call)."""
        if self._shell is None:
            from .magics import BoardShell

            self._shell = BoardShell(self)
        return self._shell

    # ------------------------------------------------------------ the kernel's questions (queries.py)
    def complete(self, code, cursor_pos):
        from .queries import complete

        return complete(self.namespace, code, cursor_pos)

    def inspect(self, code, cursor_pos, detail_level=0):
        from .queries import inspect

        return inspect(self.namespace, code, cursor_pos, detail_level)

    def evaluate(self, expressions):
        from .queries import evaluate

        return evaluate(self.namespace, expressions)

    def debug(self, command, arguments):
        """A DAP request for this session's debugger (debugger.py makes it on the first one: a
        session never debugged loads nothing)."""
        from .debugger import handle

        return handle(self, command, arguments)


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
