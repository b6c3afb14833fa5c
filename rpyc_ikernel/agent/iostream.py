"""A cell's stdout/stderr/input, routed to its session; output merged into batches for the kernel.

sys.stdout and sys.stderr of the board process are replaced once by routers: a write from a cell's
thread goes to that cell's session, other threads' writes go to the last session (or the console
when none ran yet). Output waits in an OutputBatch until the kernel's next poll takes it, so a cell
that prints a lot costs a few round trips, not one per write.
"""

import builtins
import io
import sys
import threading
import time

from . import wire

FLUSH_DELAY = 0.05  # seconds a batch of output may wait for more before it is sent
FLUSH_SIZE = 64 * 1024  # characters that make a batch worth sending at once


class StdinNotImplementedError(IOError, NotImplementedError):
    """Raised by input() when the frontend cannot answer input requests (as in IPython)."""


StdinNotImplementedError.__module__ = "builtins"  # tracebacks say "StdinNotImplementedError: ..."


def process_state():
    """The state shared by every agent version loaded into this board process (a module of its own)."""
    state = sys.modules.get(wire.STATE_MODULE)
    if state is None:
        state = type(sys)(wire.STATE_MODULE)
        state.sinks = {}  # thread ident -> Session whose cell runs in that thread
        state.last_session = None  # where output of other threads goes
        state.original_stdout = sys.stdout
        state.original_stderr = sys.stderr
        state.original_input = builtins.input
        state.original_sleep = time.sleep
        state.boot_id = _random_id()  # tells a restarted board process from a reconnect
        state.started = time.time()
        sys.modules[wire.STATE_MODULE] = state
    return state


def _random_id():
    import os

    return os.urandom(16).hex()


def current_session():
    """The session whose cell runs in this thread, or None."""
    return process_state().sinks.get(threading.get_ident())


def output_session():
    """Where display output of this thread goes: its cell's session, else the last one that ran."""
    return current_session() or process_state().last_session


class StreamRouter(io.TextIOBase):
    """Stands in for sys.stdout/sys.stderr: a cell's writes go to its session, others pass through."""

    def __init__(self, name, original):
        super().__init__()
        self.name = name
        self.original = original
        self.rpyc_ikernel_router = True

    def write(self, text):
        if not isinstance(text, str):
            raise TypeError("write() argument must be str, not %s" % type(text).__name__)
        state = process_state()
        session = state.sinks.get(threading.get_ident())
        if session is not None:
            session.write_stream(self.name, text, block=True)
        elif state.last_session is not None:
            state.last_session.write_stream(self.name, text, block=False)
        elif self.original is not None:
            self.original.write(text)
        return len(text)

    def writable(self):
        return True

    def flush(self):
        if current_session() is None and self.original is not None:
            try:
                self.original.flush()
            except Exception:
                pass

    def isatty(self):
        return False

    @property
    def encoding(self):
        return "utf-8"

    def fileno(self):
        if self.original is None:
            raise io.UnsupportedOperation("fileno")
        return self.original.fileno()


def routed_input(prompt=""):
    session = current_session()
    if session is None:
        return process_state().original_input(prompt)
    return session.request_input(str(prompt), password=False)


def routed_getpass(prompt="Password: ", stream=None):
    session = current_session()
    if session is None:
        import getpass

        return getpass._rpyc_ikernel_original(prompt, stream)
    return session.request_input(str(prompt), password=True)


def route_getpass(module):
    """getpass.getpass asks through the kernel in a cell (done when board code imports getpass)."""
    if not hasattr(module, "_rpyc_ikernel_original"):
        module._rpyc_ikernel_original = module.getpass
    module.getpass = routed_getpass


def interruptible_sleep(seconds):
    """time.sleep for cell threads on a plain server: wakes up when the cell is interrupted."""
    session = current_session()
    cell = session.cell if session is not None else None
    original_sleep = process_state().original_sleep
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


def install_hooks():
    """Route stdout/stderr/input/getpass (and sleep on a plain server) through the sessions."""
    state = process_state()
    if not getattr(sys.stdout, "rpyc_ikernel_router", False):
        state.original_stdout = sys.stdout
        sys.stdout = StreamRouter("stdout", sys.stdout)
    if not getattr(sys.stderr, "rpyc_ikernel_router", False):
        state.original_stderr = sys.stderr
        sys.stderr = StreamRouter("stderr", sys.stderr)
    builtins.input = routed_input
    if "getpass" in sys.modules:
        route_getpass(sys.modules["getpass"])
    if sys.modules.get(wire.EXECUTOR_MODULE) is None:
        time.sleep = interruptible_sleep


class OutputBatch(object):
    """A session's output events waiting for the kernel's next poll; the caller holds `cond`.

    Consecutive writes to the same stream merge into one event; a batch is due FLUSH_DELAY after its
    first event, or at once when it holds FLUSH_SIZE characters.
    """

    def __init__(self, cond):
        self.cond = cond
        self.events = []
        self.size = 0
        self.first_at = None

    def add_stream(self, name, text):
        last = self.events[-1] if self.events else None
        if last is not None and last["msg_type"] == wire.STREAM and last["content"]["name"] == name:
            last["content"]["text"].append(text)
        else:
            self.events.append(wire.stream_event(name, [text]))
        self._added(len(text))

    def add_event(self, event):
        self.events.append(event)
        self._added(FLUSH_SIZE // 4)

    def _added(self, size):
        if self.first_at is None:
            self.first_at = time.monotonic()
        self.size += size
        if self.size >= FLUSH_SIZE or len(self.events) == 1:
            self.cond.notify_all()

    def due_at(self):
        """When the batch should go: now if it is full, else FLUSH_DELAY after its first event."""
        return 0.0 if self.size >= FLUSH_SIZE else self.first_at + FLUSH_DELAY

    def take(self):
        events = self.events
        self.events = []
        self.size = 0
        self.first_at = None
        for event in events:
            if event["msg_type"] == wire.STREAM:
                event["content"]["text"] = "".join(event["content"]["text"])
        return events
