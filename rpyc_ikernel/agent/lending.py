"""GIL lending: a busy cell on the main thread hands the GIL to a frames thread that needs it.

Why: a cell that never sleeps but calls C code that releases the GIL often (a camera loop making and
encoding JPEGs with Pillow) starves every other thread. CPython lets a waiting thread force a switch
only after a whole switch interval *without* any switch; that cell releases and retakes the GIL
every few microseconds, so the serving thread of the frames link rarely wins it and a frame request
waits tens of milliseconds, sometimes hundreds. Shortening the switch interval does not help.

How: while frames are requested, a CPU-time timer (SIGPROF, ITIMER_PROF) runs a tiny handler on
the main thread between two bytecodes of the cell every LEND_TICK seconds of CPU. When a frames
thread has work (a request is readable on its socket, or it is in the middle of one), the handler
blocks on an Event: the main thread then holds no GIL and competes for none, so the frames thread
takes it at once, answers, and sets the Event when it waits for its next request. One hand-off per
request; a look with nothing to do costs the cell a poll() call. An idle board never ticks (CPU
time does not advance), and a frames thread that is not starved is not waited for.

Only on our server's main-thread executor (cells on the main thread, where signal handlers run)
and only where SIGPROF and setitimer exist; the user's own SIGPROF handler or timer is never
replaced (lending then stays off, and frames are pulled as before).
"""

import select
import signal
import sys
import threading
import time

from . import wire
from .iostream import process_state

TICK_SIGNAL = getattr(signal, "SIGPROF", None)
LEND_TICK = 0.001  # CPU seconds between two looks: a request waits at most about this long
LEND_LIMIT = 0.02  # longest one lend lasts, should a frames thread not get back to waiting
IDLE_AFTER = 1.0  # seconds without a frame request before the timer is stopped


def _state():
    """Shared by every agent version in this process: the handler installed may be an older one's."""
    state = process_state()
    if not hasattr(state, "lenders"):
        state.lenders = set()  # Lender objects of the open frames links
        state.lending_lock = threading.Lock()
        state.tick_handler = None  # our handler, once installed on the main thread
        state.ticking = False
        state.last_lend_request = 0.0
        state.in_tick = False  # the tick handler is running (on the main thread)
        state.lends = 0  # times the main thread waited for a frames thread (tests, benchmarks)
        state.lent_seconds = 0.0  # how long it waited in all
    return state


def supported():
    """True where a tick can run on the main thread while a cell runs there."""
    return (
        TICK_SIGNAL is not None
        and hasattr(signal, "setitimer")
        and sys.modules.get(wire.EXECUTOR_MODULE) is not None
    )


def _ready(sock, write=False):
    """Whether sock can be read (or written) without blocking, asked without waiting."""
    try:
        if hasattr(select, "poll"):
            poller = select.poll()
            poller.register(sock, select.POLLOUT if write else select.POLLIN)
            return bool(poller.poll(0))
        ready = select.select([], [sock], [], 0)[1] if write else select.select([sock], [], [], 0)[0]
        return bool(ready)
    except (OSError, ValueError):
        return False


class Lender(object):
    """One frames link's side of the hand-off; its serving thread calls parked()/working()."""

    def __init__(self, sock):
        self.sock = sock
        self.is_parked = True  # the serving thread waits for a request: wants no GIL
        self.thread = None  # ident of the thread serving this link
        self.lent = False
        self.returned = threading.Event()

    def parked(self):
        """The serving thread is about to wait for its next request: the main thread may go on."""
        self.is_parked = True
        if self.lent:
            self.lent = False
            self.returned.set()

    def working(self):
        self.is_parked = False
        self.thread = threading.get_ident()

    def wants_gil(self):
        """A request waits on the socket, or the thread is in the middle of one."""
        if self.is_parked:
            return _ready(self.sock)
        return _ready(self.sock, write=True)  # else blocked in a send to a slow link: no use waiting

    def lend_if_wanted(self):
        """Main thread: wait (GIL released) while this link's thread has a request to answer."""
        if not self.wants_gil():
            return
        self.returned.clear()
        self.lent = True
        # Look again: the thread may have taken the GIL between two bytecodes of this handler (the
        # call above is where CPython hands it over) and parked, without a lend to end: the wait
        # would then last LEND_LIMIT for nothing. From here on, parked() ends the wait.
        if not self.wants_gil():
            self.lent = False
            return
        state = _state()
        state.lends += 1
        started = time.perf_counter()
        try:
            self.returned.wait(LEND_LIMIT)
        finally:
            self.lent = False
            # getattr: the state may come from an older agent version of this process
            state.lent_seconds = getattr(state, "lent_seconds", 0.0) + time.perf_counter() - started


def give_back():
    """Called by a frames thread before long C work that releases the GIL (encoding an image).

    The main thread goes on meanwhile instead of waiting; once the work is done and this thread
    wants the GIL back, the next tick lends it again (it is not parked).
    """
    ident = threading.get_ident()
    for lender in tuple(_state().lenders):
        if lender.thread == ident and lender.lent:
            lender.lent = False
            lender.returned.set()


def _on_tick(signum, frame):
    # A handler can run again between two bytecodes of itself (the next tick, or the wait below
    # being interrupted): inside the Event's lock that would deadlock, so a nested tick does nothing.
    state = _state()
    if state.in_tick:
        return
    state.in_tick = True
    try:
        for lender in tuple(state.lenders):
            lender.lend_if_wanted()
    finally:
        state.in_tick = False


def install_tick_handler():
    """On the main thread (an executor job): install the tick handler unless SIGPROF is in use."""
    state = _state()
    current = signal.getsignal(TICK_SIGNAL)
    if current is state.tick_handler and current is not None:
        return
    if current not in (signal.SIG_DFL, signal.SIG_IGN, None):
        return  # the user's (a profiler's): leave it, and lend nothing
    signal.signal(TICK_SIGNAL, _on_tick)
    signal.siginterrupt(TICK_SIGNAL, False)  # restart interrupted system calls instead of EINTR
    state.tick_handler = _on_tick


def add(sock):
    """A Lender for a frames link's socket; its handler is installed when the main thread is free."""
    state = _state()
    lender = Lender(sock)
    state.lenders.add(lender)
    if supported() and state.tick_handler is None:
        sys.modules[wire.EXECUTOR_MODULE].submit(install_tick_handler)
    return lender


def remove(lender):
    """A frames link closed: with it the last one, the timer stops now (not IDLE_AFTER later), so
    no tick reaches a SIGPROF handler the user installs next."""
    lender.parked()
    state = _state()
    state.lenders.discard(lender)
    if not state.lenders:
        _stop_ticking()


def requested():
    """A frame request arrived: tick while they keep coming (the timer stops IDLE_AFTER later)."""
    state = _state()
    state.last_lend_request = time.monotonic()
    if state.tick_handler is None:
        return
    if getattr(state, "lending_off", False) or signal.getsignal(TICK_SIGNAL) is not state.tick_handler:
        # lending_off: set by benchmarks/liveimage.py for its same-run baseline; another handler: a
        # cell installed its own meanwhile, and our ticks are not for it
        _stop_ticking()
        return
    if state.ticking:
        return
    with state.lending_lock:
        if state.ticking or signal.getsignal(TICK_SIGNAL) is not state.tick_handler:
            return
        if signal.getitimer(signal.ITIMER_PROF) != (0.0, 0.0):
            return  # someone else's timer
        signal.setitimer(signal.ITIMER_PROF, LEND_TICK, LEND_TICK)
        state.tick_interval = signal.getitimer(signal.ITIMER_PROF)[1]  # as the system rounded it
        state.ticking = True
    threading.Thread(target=_stop_when_idle, name="rpyc_ikernel lending", daemon=True).start()


def _stop_when_idle():
    state = _state()
    while state.ticking and time.monotonic() - state.last_lend_request < IDLE_AFTER:
        state.original_sleep(IDLE_AFTER / 4)
    _stop_ticking()


def _stop_ticking():
    state = _state()
    if not state.ticking:
        return
    with state.lending_lock:
        if state.ticking:
            # our timer, unless a cell set its own since (a profiler): that one is left running
            if signal.getitimer(signal.ITIMER_PROF)[1] == getattr(state, "tick_interval", LEND_TICK):
                signal.setitimer(signal.ITIMER_PROF, 0)
            state.ticking = False
