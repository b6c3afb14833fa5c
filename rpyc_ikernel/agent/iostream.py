"""A cell's stdout/stderr/input, routed to its session; output merged into batches for the kernel.

sys.stdout and sys.stderr of the board process are replaced once by routers: a write from a cell's
thread goes to that cell's session, other threads' writes go to the last session (or the console
when none ran yet). Output waits in an OutputBatch until the kernel's next poll takes it, so a cell
that prints a lot costs a few round trips, not one per write.

Below Python, file descriptors 1 and 2 point at pipes while a cell runs (FdCapture), so what child
processes (subprocess, os.system) and C code write there reaches the cell too, as in ipykernel.
"""

import builtins
import codecs
import io
import json
import os
import sys
import threading
import time

from . import wire

FLUSH_DELAY = 0.05  # seconds a batch of output may wait for more before it is sent
FLUSH_SIZE = 64 * 1024  # characters that make a batch worth sending at once
DRAIN_INTERVAL = 0.001  # seconds between looks into the fd pipes before a cell's prints ...
QUIET_DRAIN_INTERVAL = 0.02  # ... where an audit hook tells when a child starts (Python 3.8+)
CHILD_EVENTS = frozenset(
    [
        "subprocess.Popen",
        "os.system",
        "os.posix_spawn",
        "os.exec",
        "os.spawn",
        "os.fork",
        "os.forkpty",
        "pty.spawn",
    ]
)


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
        self.taken = 0  # the size of what the last take() took

    def add_stream(self, name, text):
        last = self.events[-1] if self.events else None
        if last is not None and last["msg_type"] == wire.STREAM and last["content"]["name"] == name:
            last["content"]["text"].append(text)
        else:
            self.events.append(wire.stream_event(name, [text]))
        self._added(len(text))

    def add_event(self, event, urgent=False):
        """Queue an event; urgent (a debugger stop) makes the batch due at once."""
        self.events.append(event)
        self._added(FLUSH_SIZE if urgent else FLUSH_SIZE // 4)

    def _added(self, size):
        if self.first_at is None:
            self.first_at = time.monotonic()
        self.size += size
        if self.size >= FLUSH_SIZE or len(self.events) == 1:
            self.cond.notify_all()

    def due_at(self):
        """When the batch should go: now if it is full, else FLUSH_DELAY after its first event."""
        return 0.0 if self.size >= FLUSH_SIZE else self.first_at + FLUSH_DELAY

    def take(self, limit=None):
        """The events waiting, oldest first: all of them, or `limit` characters' worth (a stream's text
        is cut there; at least one other event goes; the rest stays for the next poll, in order)."""
        if limit is None or self.size <= limit:
            events, self.events = self.events, []
            self.taken, self.size, self.first_at = self.size, 0, None
        else:
            events = self._take_part(limit)
        for event in events:
            if event["msg_type"] == wire.STREAM:
                event["content"]["text"] = "".join(event["content"]["text"])
        return events

    def streaming(self):
        """Output comes faster than a batch's delay: the last take, or what is left, was a full batch."""
        return self.taken >= FLUSH_SIZE or self.size >= FLUSH_SIZE

    def _take_part(self, limit):
        taken, size = [], 0
        while self.events and size < limit:
            event = self.events[0]
            if event["msg_type"] != wire.STREAM:
                taken.append(self.events.pop(0))
                size += FLUSH_SIZE // 4
                continue
            text = "".join(event["content"]["text"])  # one C loop, however many writes it holds
            room = limit - size
            if len(text) <= room:
                event["content"]["text"] = [text]
                taken.append(self.events.pop(0))
                size += len(text)
            else:
                taken.append(wire.stream_event(event["content"]["name"], [text[:room]]))
                event["content"]["text"] = [text[room:]]
                size += room
        self.taken, self.size = size, max(0, self.size - size)
        if not self.events:
            self.size, self.first_at = 0, None  # (urgent events weigh more than they count here)
        return taken


class SentAnswers(object):
    """A session's run/poll answers the kernel has not acknowledged yet, oldest first.

    While a cell's output streams in, the kernel keeps more than one poll on its way ("ahead"), so a
    slow link carries output back to back instead of one batch per round trip; one answer per poll
    in flight waits here. A dropped link loses the answers in flight: the kernel's next poll names
    the last answer it got (`ack`), and the oldest one after it is sent again, then the next.
    """

    def __init__(self):
        self.sent = []  # (seq, answer text)
        self.link = None  # the kernel's number of the link its last poll (not ahead) came on
        self.waiting = 0  # polls waiting for output now (an ahead poll waits its turn behind them)
        self.ahead = 0  # polls that came ahead of the answers so far (tests, benchmarks)

    def clear(self):
        self.sent = []

    def add(self, seq, text):
        self.sent.append((seq, text))

    def missed(self, ack):
        """The answers after `ack`: the kernel never got them (None: it does not say)."""
        if ack is None:
            return []
        return [text for seq, text in self.sent if seq > ack]

    def resend(self, ack, ahead):
        """Forget the answers up to `ack`; those after it, if they were lost, as one answer; else None.

        An ahead poll follows a poll on the same link: answers after `ack` are on their way to the
        kernel, not lost. Without `ack` (None) every answer kept is taken for lost. All lost answers
        go at once, so polls sent ahead behind this one never overtake one of them.
        """
        if ack is not None:
            self.sent = [each for each in self.sent if each[0] > ack]
        self.ahead += bool(ahead)
        if ahead or not self.sent:
            return None
        if len(self.sent) == 1:
            return self.sent[0][1]
        return json.dumps(joined_answers([json.loads(text) for _, text in self.sent]))


def joined_answers(answers):
    """Several run/poll answers as one: all their output in order, the cell's state as of the last."""
    joined = dict(answers[-1])
    joined["events"] = [event for answer in answers for event in answer["events"]]
    for answer in answers:
        if answer.get("done"):
            joined["done"], joined["reply"] = True, answer.get("reply")
        if "input" in answer:
            joined["input"] = answer["input"]
    if answers[0].get("earlier"):
        joined["earlier"] = answers[0]["earlier"]
    if joined.get("done"):
        joined.pop("input", None)
        joined.pop("more", None)
    return joined


# --------------------------------------------------------------------------- fd-level output


class FdCapture(object):
    """File descriptors 1 and 2 of the board process point at pipes while a cell runs.

    Child processes inherit them, and C code writes to them directly: that output reaches the running
    cell's stdout/stderr instead of the server's terminal, as ipykernel does it (OutStream watchfd).
    One reader thread, started with the first cell, hands what comes through the pipes to the running
    cell's session, else to the last session (a child left running in the background, like Python
    output of other threads). Before a cell's own print or display the pipes are drained, and once
    more when the cell ends, so a child that ended before a print shows before it.

    Between cells fds 1 and 2 are the originals again (terminal, journal). Logging handlers that
    write to them are moved to duplicates of the originals when the capture is set up, so the
    server's log (connections of other threads, failed handshakes) never lands in a cell.
    Kept in the process state: one capture per process, whatever agent version uses it.
    """

    STREAMS = ((1, "stdout"), (2, "stderr"))
    CHUNK = 65536

    def __init__(self):
        self.lock = threading.RLock()  # reads and hand-overs take turns: output keeps its order
        self.active = []  # sessions whose cells run now; fd output goes to the last one
        self.saved = {}  # fd -> duplicate of the original (where it points between cells)
        self.writers = {}  # fd -> write end of its pipe
        self.readers = {}  # read end -> (stream name, incremental UTF-8 decoder)
        self.terminal = {}  # fd -> text stream on the saved original, for logging handlers
        self.broken = False  # set up failed once (fds 1/2 closed, no pipes): never try again
        self.checked_at = 0.0  # when drain_if_waiting last looked into the pipes
        self.interval = DRAIN_INTERVAL  # QUIET_DRAIN_INTERVAL once child processes are watched
        self.child_started = False  # a child process started since drain_if_waiting last looked
        self._libc = None

    # ------------------------------------------------------------ a cell's start and end
    def begin(self, session):
        """The cell of `session` starts: fds 1 and 2 go to the pipes. False where that cannot be done."""
        with self.lock:
            if not self.saved and not self._setup():
                return False
            if not self.active:
                _flush_python_streams()
                for fd, write_end in self.writers.items():
                    os.dup2(write_end, fd)
            self.active.append(session)
            return True

    def end(self, session):
        """The cell of `session` ended: what it wrote so far goes to it; fds 1 and 2 point back."""
        with self.lock:
            _flush_python_streams()
            self._flush_c_streams()
            self.drain(session)
            if session in self.active:
                self.active.remove(session)
            if not self.active:
                for fd, original in self.saved.items():
                    os.dup2(original, fd)

    def drain(self, session=None):
        """Hand on what waits in the pipes now (to `session`, else to the running cell's)."""
        with self.lock:
            for read_end in self.readers:
                self._read_available(read_end, session)

    def drain_if_waiting(self):
        """drain(), if anything waits (before each print of a cell), looking at most once a millisecond.

        select() lets other threads take the GIL, which made a tight print loop 2x slower when done
        for every print. So the first print after a child process started always looks (an audit
        hook, Python 3.8+, sees it start), other prints at most every QUIET_DRAIN_INTERVAL (without
        the hook: every DRAIN_INTERVAL; any child lives longer than that). C code that writes to fd
        1/2 right before a print may show after it.
        The look holds the lock: output the reader thread took out of a pipe but has not handed on yet
        (it lost the GIL in between, on a busy board) is handed on before this print, not after it.
        """
        if not self.active:
            return
        now = time.monotonic()
        if self.child_started:
            self.child_started = False
        elif now - self.checked_at < self.interval:
            return
        self.checked_at = now
        with self.lock:
            try:
                waiting = _select().select(list(self.readers), [], [], 0)[0]
            except (OSError, ValueError):
                return
            for read_end in waiting:
                self._read_available(read_end, None)

    # ------------------------------------------------------------ the pipes
    def _setup(self):
        if self.broken or os.name != "posix":
            return False
        try:
            for fd, _ in self.STREAMS:
                os.fstat(fd)  # a closed fd 1 or 2 (a daemon): nothing to capture, and pipe() could take it
            for fd, name in self.STREAMS:
                self.saved[fd] = _above_stdio(os.dup(fd))
                read_end, write_end = os.pipe()
                read_end, write_end = _above_stdio(read_end), _above_stdio(write_end)
                os.set_blocking(read_end, False)
                self.readers[read_end] = (name, codecs.getincrementaldecoder("utf-8")("replace"))
                self.writers[fd] = write_end
            self._keep_logs_on_terminal()
            threading.Thread(target=self._pump, name="rpyc_ikernel fd output", daemon=True).start()
            if self._watch_children():
                self.interval = QUIET_DRAIN_INTERVAL
        except (OSError, RuntimeError):
            self._close()
            self.broken = True
            return False
        return True

    def _watch_children(self):
        """An audit hook (Python 3.8+; it stays for the process's life) flags each child process start."""
        add_hook = getattr(sys, "addaudithook", None)
        if add_hook is None:
            return False
        capture = self

        def on_event(event, args):
            if event in CHILD_EVENTS:
                capture.child_started = True

        try:
            add_hook(on_event)
        except Exception:  # another audit hook refused it
            return False
        return True

    def _close(self):
        for fd in list(self.saved.values()) + list(self.writers.values()) + list(self.readers):
            try:
                os.close(fd)
            except OSError:
                pass
        self.saved, self.writers, self.readers = {}, {}, {}

    def _pump(self):
        """The reader thread: waits for output in the pipes and hands it on (the pipes stay open)."""
        select = _select()
        ends = list(self.readers)
        while True:
            try:
                ready = select.select(ends, [], [])[0]
            except InterruptedError:
                continue
            except (OSError, ValueError):
                return
            with self.lock:
                for read_end in ready:
                    self._read_available(read_end, None)

    def _read_available(self, read_end, session):
        name, decoder = self.readers[read_end]
        for _ in range(32):  # at most 2 MiB at once: a pipe holds 64 KiB (1 MiB at most)
            try:
                data = os.read(read_end, self.CHUNK)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            if not data:
                return
            text = decoder.decode(data)
            if text:
                self._hand_on(name, text, session)
            if len(data) < self.CHUNK:  # the pipe is empty now
                return

    def _hand_on(self, name, text, session):
        if session is None:
            session = self.active[-1] if self.active else process_state().last_session
        if session is not None:
            # a running cell waits for the link to drain big output (the child then waits on the pipe)
            session._write_stream(name, text, block=session.cell is not None)

    # ------------------------------------------------------------ what must not be captured
    def _keep_logs_on_terminal(self):
        """Logging handlers on fds 1/2 (the server's log) write to the saved originals instead."""
        logging = sys.modules.get("logging")
        if logging is None:
            return
        loggers = [logging.getLogger()]
        loggers += [
            each for each in list(logging.Logger.manager.loggerDict.values()) if hasattr(each, "handlers")
        ]
        for logger in loggers:
            for handler in list(logger.handlers):
                stream = getattr(handler, "stream", None)
                if not isinstance(handler, logging.StreamHandler) or getattr(
                    stream, "rpyc_ikernel_router", False
                ):
                    continue
                try:
                    fd = stream.fileno()
                except (AttributeError, OSError, ValueError):
                    continue
                if fd in self.saved:
                    handler.setStream(self._terminal_stream(fd, stream))

    def _terminal_stream(self, fd, like):
        stream = self.terminal.get(fd)
        if stream is None:
            encoding = getattr(like, "encoding", None) or "utf-8"
            stream = open(
                self.saved[fd], "w", buffering=1, encoding=encoding, errors="backslashreplace", closefd=False
            )
            self.terminal[fd] = stream
        return stream

    def _flush_c_streams(self):
        """fflush(NULL): C code's buffered stdout goes to the cell, not to the next one (only where
        ctypes is loaded already, i.e. where C code the cell loaded with ctypes may have printf'ed)."""
        ctypes = sys.modules.get("ctypes")
        if ctypes is None:
            return
        try:
            if self._libc is None:
                self._libc = ctypes.CDLL(None)
            self._libc.fflush(None)
        except Exception:
            pass


def _select():
    import select  # rpyc has loaded it already

    return select


def _above_stdio(fd):
    """The same file as fd, as a descriptor above 2 (pipe() and dup() take the lowest free one)."""
    if fd > 2:
        return fd
    held = []
    try:
        new = fd
        while new <= 2:
            new = os.dup(fd)
            held.append(new)
        held.pop()
        return new
    finally:
        for each in held + [fd]:
            os.close(each)


def _flush_python_streams():
    """What Python code wrote to the process's original stdout/stderr objects goes out first."""
    state = process_state()
    for stream in (state.original_stdout, state.original_stderr, sys.__stdout__, sys.__stderr__):
        try:
            if stream is not None and not getattr(stream, "rpyc_ikernel_router", False):
                stream.flush()
        except Exception:
            pass


def fd_capture():
    """The process's FdCapture (made on first use; nothing is opened until a cell begins)."""
    state = process_state()
    capture = getattr(state, "fd_capture", None)
    if capture is None:
        capture = state.fd_capture = FdCapture()
    return capture


def drain_fd_output():
    """Before a cell's own output: what its children wrote to fds 1/2 until now goes first."""
    capture = getattr(process_state(), "fd_capture", None)
    if capture is not None:
        capture.drain_if_waiting()
