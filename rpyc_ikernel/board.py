"""The board session: run cells, reconnect, interrupt, complete, inspect.

One Board keeps one session (namespace) on the board across reconnects. Every call to the board is
bounded in time: a cell is run as a series of short long-polls (``Session.poll``), so a long cell is
never cut short, while a link that stays silent when an answer is due (link.SILENCE_LIMIT) is dead.
A reset or closed link is seen at once (link.BoardStream). How the board is reached (address,
credentials, tunnel, deadlines, the wording of a failed connect) is its Connector's (connector.py);
connections beside the main link are in sidelink.py, rpyc-level helpers in link.py, the errors in
errors.py. What the kernel uses of a board is :class:`BoardLike`.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Protocol

import rpyc

from . import bootstrap
from .agent import wire
from .connector import CONNECT_TIMEOUT, Address, Connector, Tunnel
from .connector import DEFAULT_HOST as DEFAULT_HOST
from .connector import DEFAULT_PORT as DEFAULT_PORT
from .errors import BoardConnectionLost, BoardError, BoardMisbehaved, BoardRestarted, BoardUnreachable
from .errors import describe_socket_error as _describe_socket_error
from .handshake import Credentials
from .link import CALL_TIMEOUT, WAIT_SLICE, PendingCall, call, close_connection, link_alive
from .outputs import trusted_from_environment
from .sidelink import SideLink, SideLinkSlot

POLL_WAIT = 0.5  # seconds the board may hold a poll open waiting for output
FIRST_WAIT = 0.25  # how long the first round trip of a cell waits for it to finish
POLLS_AHEAD = 4  # polls on their way while output streams in: the link carries batches back to back
# A cell waits for a silent link (TCP still up: a Wi-Fi stall) up to link.silence_limit (12 s, more
# on a very slow link), saying so in the cell after NOTICE_AFTER; an interrupt stops the wait sooner.
# A link the board closed or reset is seen at once and reconnected within RECONNECT_WINDOW.
NOTICE_AFTER = 5.0
RECONNECT_WINDOW = 4.0  # seconds a running cell tries to get a dropped link back (or one connect budget)
# An interrupt the board did not answer ends the wait for a link silent this long (+ 2 round trips); one
# it answered proves the board alive (only slow: a loaded board, a busy loop): the silence limit holds.
INTERRUPT_GRACE = 2.0


@dataclass
class Notice:
    """Something the user should see once in the cell (a reconnect, a restarted board)."""

    text: str


@dataclass
class CellOutcome:
    """The end of a cell on the board: the reply fields and the result bundle, if any."""

    reply: dict
    result: dict | None = None


@dataclass
class InputRequest:
    """Board code called input() or getpass(); answer with Board.answer_input."""

    prompt: str
    password: bool


@dataclass
class BoardLink:
    """One open connection and the agent session reached through it."""

    conn: rpyc.Connection
    agent: object
    info: dict = field(default_factory=dict)
    # the session's methods as netrefs fetched once at connect: calling one is a single round trip
    methods: dict = field(default_factory=dict)
    number: int = field(default_factory=lambda: next(_LINK_NUMBERS))  # polls say which link they came on


_LINK_NUMBERS = itertools.count(1)


class BoardLike(Protocol):
    """What the kernel (kernel.py) uses of a board: one Board, or a group of boards standing for one.

    Cells: run_cell yields output events (agent/wire.py dicts), Notice, InputRequest, then one
    CellOutcome; answer_input answers an InputRequest; interrupt stops the running cell. Lifecycle:
    connect, close, take_notices. Introspection: complete, inspect, evaluate, debug, status.
    Live images (liveimage.py) and file transfers (transfer.py) need one Board: they open side links
    to it through its connector.
    """

    trusted: bool  # the board's script and active HTML are published as they come (outputs.py)
    running_cell_id: str | None  # the cell an interrupt is meant for
    warm_side_link: bool  # open the link for interrupts ahead, after each connect

    @property
    def address(self) -> object:
        """str() of it names the board in messages ("HOST:PORT", "adb device SERIAL port N")."""

    @property
    def problem(self) -> str | None:
        """Why the board cannot be used at all (bad settings), else None."""

    @property
    def security(self) -> str:
        """What the last handshake established, for status() and the "Connected" line."""

    @property
    def connected(self) -> bool: ...

    @property
    def info(self) -> dict:
        """The board's facts from the last connect (python, platform, boot_id, debugger, ...)."""

    def route(self) -> str | None:
        """How the board is reached besides its address (an adb forward), or None."""

    def connect(self, deadline: float | None = None) -> object: ...

    def close(self) -> None: ...

    def take_notices(self) -> list[Notice]: ...

    def status(self, samples: int = 5) -> dict: ...

    def run_cell(
        self,
        code: str,
        filename: str,
        allow_stdin: bool = False,
        silent: bool = False,
        count: int | None = None,
        raw: str | None = None,
    ) -> Iterator[dict | InputRequest | Notice | CellOutcome]: ...

    def answer_input(self, value: str | None) -> None: ...

    def interrupt(self, cell_id: str | None = None) -> bool: ...

    def complete(self, code: str, cursor_pos: int, beside_cell: bool = False) -> dict: ...

    def inspect(self, code: str, cursor_pos: int, detail_level: int, beside_cell: bool = False) -> dict: ...

    def debug(self, command: str, arguments: dict, beside_cell: bool = False) -> dict: ...

    def evaluate(self, expressions: dict) -> dict: ...


class Board:
    """A board reached through rpyc classic; keeps one session (namespace) on it across reconnects.

    `where` is a Connector, or an Address (a Connector is then made of it with credentials,
    connect_timeout and tunnel).
    """

    def __init__(
        self,
        where: Address | Connector,
        session_id: str,
        credentials: Credentials | None = None,
        connect_timeout: float = CONNECT_TIMEOUT,
        tunnel: Tunnel | None = None,
        trusted: bool | None = None,
    ) -> None:
        if isinstance(where, Connector):
            self.connector = where
        else:
            self.connector = Connector(where, credentials, connect_timeout, tunnel)
        # publish the board's script and active HTML as they come (see outputs.py); None: the setting
        self.trusted = trusted_from_environment() if trusted is None else bool(trusted)
        self.session_id = session_id
        self._link: BoardLink | None = None
        self._boot_id: str | None = None  # identity of the board process we last talked to
        self._notices: list[Notice] = []
        self._lock = threading.RLock()
        self._side = SideLinkSlot(self.connector, session_id)  # see _link_beside_cell
        self.warm_side_link = False  # open the side link in the background after each main connect
        self.running_cell_id: str | None = None  # the cell an interrupt is meant for
        self._interrupted: str | None = None  # the running cell's id once the user interrupted it
        self._interrupt_answered = False  # the board answered that interrupt: it is alive
        self._last_seq: int | None = None  # seq of the last cell answer received (see Session.run's ack)

    # ------------------------------------------------------------ how it is reached (the connector's)
    @property
    def address(self) -> Address:
        return self.connector.address

    @property
    def credentials(self) -> Credentials:
        return self.connector.credentials

    @property
    def tunnel(self) -> Tunnel | None:
        return self.connector.tunnel

    @property
    def problem(self) -> str | None:
        return self.connector.problem

    @property
    def security(self) -> str:
        """What the last handshake established, for status()."""
        return self.connector.security

    @property
    def rtt(self) -> float:
        """The round trip the last connect measured (seconds)."""
        return self.connector.rtt

    @property
    def connect_budget(self) -> float:
        """Seconds a new connection may take: connect_timeout, or more on a link measured as slow."""
        return self.connector.connect_budget

    @property
    def silence_limit(self) -> float:
        """Seconds the link may stay silent while an answer is due before it is taken for dead."""
        return self.connector.silence_limit

    def route(self) -> str | None:
        return self.connector.route()

    def open_connection(self, deadline: float | None = None) -> tuple[rpyc.Connection, object]:
        """A new connection to this board with the agent loaded: (conn, agent package netref)."""
        return self.connector.open_connection(deadline)

    def open_attached(
        self, deadline: float | None = None, session_id: str | None = None, notices: list | None = None
    ) -> tuple[rpyc.Connection, bootstrap.Attached]:
        """The connector's open_attached: a Board stands where a Dialer does (SideLink(board))."""
        return self.connector.open_attached(deadline, session_id, notices)

    # ------------------------------------------------------------ the main link
    @property
    def connected(self) -> bool:
        link = self._link
        return link is not None and not link.conn.closed

    def connect(self, deadline: float | None = None) -> BoardLink:
        """Open the main link (if not open): connect, load the agent, attach our session."""
        with self._lock:
            if self.connected and link_alive(self._link.conn):
                return self._link
            self.close()
            said: list[str] = []
            conn, attached = self.connector.open_attached(deadline, self.session_id, said)
            self._notices.extend(Notice(text) for text in said)
            info = attached.info
            if self._boot_id is not None:
                if info.get("boot_id") == self._boot_id:
                    self._notices.append(Notice(f"reconnected to board {self.address}; variables kept"))
                else:
                    self._notices.append(
                        Notice(
                            f"reconnected to board {self.address}, which restarted: variables from"
                            " earlier cells are gone"
                        )
                    )
            self._boot_id = info.get("boot_id")
            self._link = BoardLink(conn=conn, agent=attached.agent, info=info, methods=attached.methods)
            if self.warm_side_link:
                self._side.warm()
            return self._link

    def take_notices(self) -> list[Notice]:
        """Notices gathered since the last call (reconnects), oldest first."""
        notices, self._notices = self._notices, []
        return notices

    def close(self) -> None:
        """Close the link; the session and its namespace stay on the board."""
        with self._lock:
            link, self._link = self._link, None
        if link is not None:
            close_connection(link.conn)
        self._side.close()
        self.connector.close()

    def _link_beside_cell(self) -> SideLink:
        """A second link to the same session, for requests made while a cell runs.

        The main link is busy with the running cell's long-polls (up to POLL_WAIT each); a SideLink
        has its own thread on the board, so an interrupt or a completion sent through it is answered
        at once. It is opened on first need (or ahead, see warm_side_link) and kept until close().
        """
        return self._side.get()

    @property
    def side_links(self) -> SideLinkSlot:
        """The slot of the link beside the main one: file transfers borrow it (see transfer.py)."""
        return self._side

    def _introspection_link(self, beside_cell: bool) -> BoardLink | SideLink:
        """The main link when idle; the side link while a cell runs (see _link_beside_cell)."""
        return self._link_beside_cell() if beside_cell and self.connected else self.connect()

    @property
    def info(self) -> dict:
        return self._link.info if self._link else {}

    def status(self, samples: int = 5) -> dict:
        """Fresh facts about the board (agent board_status) and the median round trip in seconds."""
        link = self.connect()
        try:
            facts = json.loads(call(link.conn, link.agent.board_status, timeout=CALL_TIMEOUT))
            ping = link.agent.ping
            times = []
            for _ in range(samples):
                started = time.perf_counter()
                call(link.conn, ping, timeout=CALL_TIMEOUT)
                times.append(time.perf_counter() - started)
        except (EOFError, OSError) as exc:  # the plain look-ups (link.agent.ping) outside call()
            self.close()
            raise BoardConnectionLost(f"lost the connection to the board ({_describe_socket_error(exc)})")
        facts["latency"] = sorted(times)[len(times) // 2]
        return facts

    # ------------------------------------------------------------ cells
    def run_cell(
        self,
        code: str,
        filename: str,
        allow_stdin: bool = False,
        silent: bool = False,
        count: int | None = None,
        raw: str | None = None,
    ) -> Iterator[dict | InputRequest | Notice | CellOutcome]:
        """Run code on the board; yields output events as they come, then one CellOutcome.

        count: the execution count of a cell stored in the history (the board keeps In, Out, _N);
        raw: the cell as the user typed it (for %history), when code is its rewritten form.

        A link that drops while the cell runs is re-established (the board keeps running the cell and
        keeps its output until we acknowledge it), so nothing is lost; a silent link is waited for
        (see NOTICE_AFTER); a board that restarted or stays away ends the cell with BoardConnectionLost.
        """
        cell_id = uuid.uuid4().hex
        self.running_cell_id = cell_id
        self._interrupted = None
        self._interrupt_answered = False
        self.connect()
        yield from self.take_notices()
        ack = self._last_seq
        message = yield from self._cell_request(
            lambda link: (
                link.methods["run"],
                code,
                filename,
                FIRST_WAIT,
                allow_stdin,
                silent,
                cell_id,
                count,
                raw,
                ack,
            ),
            FIRST_WAIT,
        )
        if message.get("busy"):
            raise BoardError(
                "the board is still running an earlier cell of this kernel; interrupt it"
                " (Kernel > Interrupt) or wait for it"
            )
        if message.get("earlier"):
            yield from _earlier_output(message["earlier"])
        ahead: list[PendingCall] = []  # polls sent before this answer's output was published
        poll = lambda link: (link.methods["poll"], POLL_WAIT, self._last_seq, False, link.number)  # noqa: E731
        while True:
            yield from self.take_notices()
            ahead[:] = [pending for pending in ahead if self._is_current(pending)]  # a dropped link's go
            if message.get("more") and not message["done"] and "input" not in message:
                self._send_polls_ahead(ahead)
            yield from message["events"]
            if "input" in message:
                yield InputRequest(message["input"]["prompt"], message["input"]["password"])
            if message["done"]:
                for pending in ahead:  # answered at once: the cell has ended
                    if self._is_current(pending):  # (a dropped link's: the next cell gets what it lost)
                        answer = yield from self._cell_request(poll, POLL_WAIT, sent=pending)
                        yield from answer["events"]
                reply = message["reply"]
                yield CellOutcome(reply=reply, result=reply.pop("result", None))
                return
            if not message.get("running", True) and not message["events"]:
                raise BoardError(f"board {self.address} no longer runs this cell and has no result for it")
            sent = ahead.pop(0) if ahead else None
            message = yield from self._cell_request(poll, POLL_WAIT, sent=sent)

    def _send_polls_ahead(self, ahead: list[PendingCall]) -> None:
        """Output streams in: have POLLS_AHEAD polls on their way before publishing this answer's, so
        the board sends its next batch while this one is published and the link is never idle for a
        round trip. The first asks as usual, the others go `ahead` of the answers (Session.poll)."""
        link = self._link if self.connected else None
        if link is None:
            return
        try:
            while len(ahead) < POLLS_AHEAD:
                ahead.append(
                    PendingCall(
                        link.conn, link.methods["poll"], POLL_WAIT, self._last_seq, bool(ahead), link.number
                    )
                )
        except BoardConnectionLost:
            ahead.clear()  # the next request reconnects

    def _is_current(self, pending: PendingCall) -> bool:
        """The call was sent on the link open now (its answer may still come)."""
        return self._link is not None and pending.conn is self._link.conn and not pending.conn.closed

    def _cell_request(
        self, build: Callable, wait: float, sent: PendingCall | None = None
    ) -> Iterator[Notice]:
        """One run/poll call (the board may hold it `wait` s); yields notices, returns the answer.

        `sent`: that call was sent ahead already; on a link since replaced it is asked again.
        On a dropped link: reconnect within the reconnect window and repeat it (the board answers a
        repeated request without losing anything). A silent link ends the cell (see _await_answer).
        """
        deadline = None
        while True:
            link = self._link if self.connected else None
            try:
                if sent is not None and link is not None and self._is_current(sent):
                    pending = sent
                else:
                    if link is None:
                        link = self._reconnect_for_cell(deadline)
                    method, *args = build(link)
                    pending = PendingCall(link.conn, method, *args)
                sent = None
                yield from self._await_answer(pending, wait)
                answer = json.loads(pending.result(CALL_TIMEOUT))  # in already: returns at once
                self._last_seq = answer.get("seq", self._last_seq)  # acknowledged with the next cell
                return answer
            except BoardRestarted:
                raise
            except BoardMisbehaved as exc:  # not a blip: do not go back for more
                self.close()
                raise BoardMisbehaved(
                    f"board {self.address} broke the protocol while this cell ran: {exc}. The cell may"
                    " still be running there; the next cell reconnects."
                ) from None
            except _GaveUp as exc:
                raise BoardConnectionLost(str(exc)) from None
            except BoardConnectionLost as exc:
                self.close()
                if deadline is None:
                    deadline = time.monotonic() + max(RECONNECT_WINDOW, self.connect_budget)
                if time.monotonic() >= deadline:
                    raise BoardConnectionLost(
                        f"lost the connection to board {self.address} while this cell ran ({exc}); the cell"
                        " may still be running there. The next cell reconnects."
                    ) from None

    def _await_answer(self, pending: PendingCall, wait: float) -> Iterator[Notice]:
        """Wait for a run/poll answer due `wait` s after it left, however long the link is silent,
        up to the silence limit: a stall is waited for, and one line says so after NOTICE_AFTER.

        A reset or closed link raises BoardConnectionLost at once (from pending.wait); a link silent
        for the whole limit, or silent and interrupted by the user, ends the cell (_GaveUp).
        """
        limit = self.silence_limit
        longest = 0.0
        while not pending.wait(WAIT_SLICE):
            silent = pending.silent_for(wait)
            if silent >= NOTICE_AFTER and longest < NOTICE_AFTER:
                yield Notice(
                    f"board {self.address} silent for {silent:.0f} s; waiting up to {limit:.0f} s"
                    " (interrupt to stop waiting)"
                )
            longest = max(longest, silent)
            interrupted = (
                self._interrupted is not None
                and not self._interrupt_answered
                and silent >= INTERRUPT_GRACE + 2 * self.rtt
            )
            if silent >= limit or interrupted:
                pending.abandon()
                self.close()
                why = "stopped waiting (interrupted)" if interrupted else "the link looks dead"
                raise _GaveUp(
                    f"board {self.address} sent nothing for {silent:.0f} s; {why}. The cell may still be"
                    " running there; the next cell reconnects."
                )
        if longest >= NOTICE_AFTER:
            yield Notice(f"board {self.address} answers again, after {longest:.0f} s of silence")

    def _reconnect_for_cell(self, deadline: float | None) -> BoardLink:
        boot_id = self._boot_id
        while True:
            try:
                link = self.connect(deadline)
            except BoardUnreachable as exc:
                if getattr(exc, "refused", False):
                    raise _GaveUp(
                        f"lost board {self.address} while this cell ran: the link was closed and nothing"
                        " listens there now (connection refused), so its server stopped and the cell's"
                        " work is gone. The next cell tries again."
                    ) from None
                if deadline is None or time.monotonic() + 0.25 >= deadline:
                    raise BoardConnectionLost(str(exc)) from None
                time.sleep(0.25)
                continue
            if boot_id is not None and self._boot_id != boot_id:
                self.take_notices()
                raise BoardRestarted(
                    f"board {self.address} restarted while this cell ran: the cell's work and the"
                    " variables from earlier cells are gone"
                )
            return link

    def answer_input(self, value: str | None) -> None:
        """Hand the user's answer (None for end of input) to the waiting input() on the board."""
        link = self.connect()
        call(link.conn, link.methods["provide_input"], value or "", value is None, timeout=CALL_TIMEOUT)

    def interrupt(self, cell_id: str | None = None) -> bool:
        """Stop the running cell (KeyboardInterrupt on the board). True if one was running.

        cell_id (Board.running_cell_id when the user asked) makes a late interrupt a no-op for the
        cell after it.

        Sent through the side link so it does not wait for the cell's current long-poll; if that link
        cannot be opened, through the main link (the board then sees it within POLL_WAIT).
        """
        current = cell_id is None or cell_id == self.running_cell_id
        if current:
            self._interrupt_answered = False
            self._interrupted = self.running_cell_id  # a cell waiting for a silent link stops waiting
        link = self._link
        if link is None or link.conn.closed:
            return False
        for route in (self._link_beside_cell, lambda: link):
            try:
                chosen = route()
                stopped = bool(call(chosen.conn, chosen.methods["interrupt"], cell_id, timeout=CALL_TIMEOUT))
            except Exception:
                continue
            if current and self._interrupted == self.running_cell_id:
                self._interrupt_answered = True  # the board is alive: its cell's answer is only late
            return stopped
        return False

    # ------------------------------------------------------------ introspection
    def complete(self, code: str, cursor_pos: int, beside_cell: bool = False) -> dict:
        """Completions from the board's namespace; beside_cell=True while a cell runs (another thread)."""
        link = self._introspection_link(beside_cell)
        return json.loads(call(link.conn, link.methods["complete"], code, cursor_pos, timeout=CALL_TIMEOUT))

    def inspect(self, code: str, cursor_pos: int, detail_level: int, beside_cell: bool = False) -> dict:
        """Help on the board object at the cursor; beside_cell=True while a cell runs (another thread)."""
        link = self._introspection_link(beside_cell)
        text = call(link.conn, link.methods["inspect"], code, cursor_pos, detail_level, timeout=CALL_TIMEOUT)
        return json.loads(text)

    def debug(self, command: str, arguments: dict, beside_cell: bool = False) -> dict:
        """One request to the board's debugger (agent/debugger.py): {"success", "body" | "message"}.

        beside_cell=True while a cell runs (it may be stopped at a breakpoint): through the side link.
        """
        link = self._introspection_link(beside_cell)
        text = call(link.conn, link.methods["debug"], command, json.dumps(arguments), timeout=CALL_TIMEOUT)
        return json.loads(text)

    def evaluate(self, expressions: dict) -> dict:
        link = self.connect()
        text = call(link.conn, link.methods["evaluate"], json.dumps(expressions), timeout=CALL_TIMEOUT)
        return json.loads(text)


def _earlier_output(earlier: dict) -> Iterator[dict | Notice]:
    """What the kernel missed of the cell before (a stall it gave up on, a cell that ran after the
    board woke up), shown at the start of this cell under one line saying so."""
    yield Notice(
        "the previous cell's output that arrived after it ended (the board stalled or the link dropped):"
    )
    yield from earlier.get("events") or []
    reply = earlier.get("reply") or {}
    if reply.get("status") == "error":
        lines = reply.get("traceback") or [f"{reply.get('ename')}: {reply.get('evalue')}"]
        yield wire.stream_event("stderr", "\n".join(str(line) for line in lines) + "\n")
    elif isinstance(reply.get("result"), dict):
        result = reply["result"]
        yield wire.display_event(result.get("data"), result.get("metadata") or {}, {})
    if reply:
        yield Notice("(end of the previous cell's output)")


class _GaveUp(BoardConnectionLost):
    """The cell's wait for the board ends here, without a reconnect (see Board._await_answer)."""
