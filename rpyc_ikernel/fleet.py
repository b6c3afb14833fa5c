"""Several boards at once: one cell on a group of boards, a value from each, their live images in a row.

A `%%boards pi1 pi2` cell (that cell only) or `# exec(self.on("pi1", "pi2"))` (the cells after it,
until `self.on()`) runs the cell on every board of the group at the same time, one thread per board,
each with its own :class:`~rpyc_ikernel.board.Board`. Their output goes through one queue to the
kernel's thread, which publishes it with each line labelled by its board (``[pi1] ...``), so one
board's lines stay in their order. A board's error, death or unknown name is one line under its
name; the others go on. This module holds no state for the one-board path: the kernel asks
:meth:`Fleet.takes` (a regular expression and an attribute) and goes on as before when it says no.

The Board methods used here are the kernel's own: the constructor, ``connect``, ``close``,
``run_cell``, ``interrupt``, ``running_cell_id``, ``evaluate``, ``answer_input``, ``info``,
``security``, ``address`` and ``trusted``; live images go through liveimage.LiveImagePump, one per board.
"""

from __future__ import annotations

import ast
import html
import queue
import re
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from .board import Board, CellOutcome, InputRequest, Notice
from .checks import host_name, port_number
from .connector import DEFAULT_PORT, Address
from .errors import BoardError
from .handshake import Credentials
from .ipython_syntax import to_board_code
from .liveimage import LiveImagePump, Publisher, image_interval
from .outputs import BadOutput, check_bundle, check_error, check_event

MAGIC = re.compile(r"[ \t]*%%boards(?=[ \t\n]|$)(?P<names>[^\n]*)")
PARTIAL_LINE_AGE = 1.0  # seconds a line without its end waits for the rest before it is shown alone
TICK = 0.2  # seconds: how often held line starts are looked at, output or not
INTERRUPT_RETRY = 0.05  # seconds between attempts to stop a cell that has not reached its board yet
GRID_GAP = 0.05  # seconds between two updates of a grid of live images, at least
ALL = "all"


class FleetError(BoardError):
    """A group that cannot be made (a name that resolves to nothing, a board named twice)."""


class BoardFailed(Exception):
    """What gather() holds for a board that gave no value: the one line saying why."""


@dataclass
class Member:
    """One board of a group, under the name the user gave it."""

    label: str
    board: Board


@dataclass
class _Finished:
    """A board's thread ended the cell: its outcome, or the one line saying why it has none."""

    outcome: CellOutcome | None = None
    failure: str | None = None


@dataclass
class Target:
    """A board as named in %%boards or on(): host, port (None: the default) and the name as typed."""

    label: str
    host: str
    port: int | None = None


def parse_target(text: str) -> Target:
    """`pi1`, `pi1.local`, `192.168.1.5`, `host:18813`, `[::1]:18813`, or any of them after `label=`
    (a short name for the board's output); ValueError in one line."""
    label, equals, where = text.partition("=")
    if not equals:
        label, where = text, text
    elif not label or not label.isprintable() or "[" in label:
        raise ValueError(f"cannot read board {text!r}: give LABEL=ADDRESS[:PORT]")
    host, port = where, None
    if where.startswith("["):
        inside, _, rest = where[1:].partition("]")
        host, port = inside, rest[1:] if rest.startswith(":") else None
        if rest and not rest.startswith(":"):
            raise ValueError(f"cannot read board {text!r}: give [ADDRESS]:PORT")
    elif where.count(":") == 1:
        host, port = where.split(":")
    host = host_name(host, f"host of board {text!r}")
    return Target(label, host, None if port is None else port_number(port, f"port of board {text!r}"))


def _default_port() -> int:
    try:
        return Address.from_environment().port
    except BoardError:
        return DEFAULT_PORT


def resolve_targets(names: list[str], wait: float = 2.0) -> tuple[list[tuple[str, Address, bool]], list[str]]:
    """(label, address, announced TLS) of each name, and one line per name that resolves to nothing.

    Addresses and names the system resolver knows are used as given; announced names (and `all`,
    every announced board) are found with one mDNS browse for all of them (discovery.py).
    """
    from .discovery import DiscoveryError, discover, wants_discovery

    targets, problems = [], []
    for name in names:
        if name.lower() == ALL:
            targets.append(Target(ALL, ""))
            continue
        try:
            targets.append(parse_target(name))
        except ValueError as exc:
            problems.append(str(exc))
    browse = [t for t in targets if not t.host or wants_discovery(t.host)]  # no host: `all`
    found = None
    if browse:
        try:
            found = discover(wait)
        except DiscoveryError as exc:
            problems.append(str(exc))
    resolved = []
    for target in targets:
        if not target.host:  # `all`
            if found is not None and not found.boards:
                problems.append(f"`all`: no board announced itself on the network within {wait:g} s")
            boards = found.boards if found is not None else []
            for board in boards:
                twins = sum(other.name.lower() == board.name.lower() for other in boards) > 1
                label = f"{board.name}@{board.address}" if twins else board.name  # one name, two hosts
                resolved.append((label, Address(board.address, board.port), board.tls == "yes"))
            continue
        if target not in browse:
            resolved.append((target.label, Address(target.host, target.port or _default_port()), False))
            continue
        try:
            board = found.find(target.host) if found is not None else None
        except DiscoveryError as exc:
            problems.append(f"[{target.label}] {exc}")
            continue
        if board is not None:
            address = Address(board.address, target.port or board.port)
            resolved.append((target.label, address, board.tls == "yes"))
        elif target.host.lower().rstrip(".").endswith(".local"):  # the system's mDNS may know it
            resolved.append((target.label, Address(target.host, target.port or _default_port()), False))
        elif found is not None:
            problems.append(
                f"[{target.label}] no board of that name answered on the network within {wait:g} s,"
                " and it is no host name; check the name, or give the board's address"
            )
    return resolved, problems


class LabelledStreams:
    """stdout/stderr of several boards in one cell: every line starts with its board's label.

    A line is published once its end has come (or it waited PARTIAL_LINE_AGE), so lines of two
    boards never run into each other; one board's lines keep their order.
    """

    def __init__(self, publish: Callable[[str, dict], None]) -> None:
        self._publish = publish
        self._partial: dict[tuple[str, str], tuple[str, float]] = {}

    def write(self, label: str, name: str, text: str) -> None:
        held, since = self._partial.pop((label, name), ("", 0.0))
        complete, newline, rest = (held + text).rpartition("\n")
        if newline:
            self._send(label, name, complete + "\n")
        if rest:  # a line's start: it waits for its end (since when, if it was already waiting)
            self._partial[(label, name)] = (rest, since if held and not newline else time.monotonic())

    def flush(self, label: str | None = None, older_than: float = 0.0) -> None:
        """Publish held line starts: of one board (or all), those that waited `older_than` s."""
        now = time.monotonic()
        for key, (text, since) in list(self._partial.items()):
            if (label is None or key[0] == label) and now - since >= older_than:
                del self._partial[key]
                self._send(key[0], key[1], text + "\n")

    def _send(self, label: str, name: str, text: str) -> None:
        lines = text[:-1].split("\n")
        self._publish("stream", {"name": name, "text": "".join(f"[{label}] {line}\n" for line in lines)})


class BoardGroup:
    """Boards that run each cell together, one thread per board while a cell runs (none between)."""

    def __init__(self, members: list[Member]) -> None:
        self.members = members
        self._interrupted = threading.Event()
        self._running: dict[str, Board] = {}
        self._lock = threading.Lock()

    @property
    def labels(self) -> list[str]:
        return [member.label for member in self.members]

    def connect(self) -> list[tuple[str, str | None]]:
        """Connect every board at once: (label, None or the one line why not), in the group's order."""
        return [(label, problem) for label, problem, _ in _each(self.members, lambda m: m.board.connect())]

    def run_cell(
        self, code: str, filename: str, silent: bool = False, count: int | None = None, raw: str | None = None
    ) -> Iterator[tuple[str, object]]:
        """Run code on every board at once; yields (label, output event | Notice | _Finished) as they come.

        Each board ends with one _Finished. An interrupt (interrupt()) stops every board's cell.
        """
        out: queue.Queue = queue.Queue()
        self._interrupted.clear()
        with self._lock:
            self._running = {member.label: member.board for member in self.members}
        threads = [
            threading.Thread(
                target=self._run_one,
                args=(member, code, filename, silent, count, raw, out),
                name=f"rpyc_ikernel board {member.label}",
                daemon=True,
            )
            for member in self.members
        ]
        for thread in threads:
            thread.start()
        left = len(threads)
        try:
            while left:
                try:
                    label, item = out.get(timeout=TICK)
                except queue.Empty:
                    yield "", None  # a tick: the caller may flush lines that wait for their end
                    continue
                if isinstance(item, _Finished):
                    left -= 1
                    with self._lock:
                        self._running.pop(label, None)
                yield label, item
        finally:  # the caller stopped early: no interrupt thread may wait for these boards forever
            with self._lock:
                self._running = {}

    def _run_one(self, member: Member, code, filename, silent, count, raw, out: queue.Queue) -> None:
        board = member.board
        finished = _Finished(failure="the board ended the cell without a reply")
        try:
            if self._interrupted.is_set():
                finished = _Finished(failure="KeyboardInterrupt: interrupted before the cell started")
                return
            for item in board.run_cell(
                code, filename, allow_stdin=False, silent=silent, count=count, raw=raw
            ):
                if isinstance(item, CellOutcome):
                    finished = _Finished(outcome=item)
                    return
                if isinstance(item, InputRequest):  # a group cell has no keyboard: end of input
                    board.answer_input(None)
                    continue
                out.put((member.label, item))
        except BoardError as exc:
            finished = _Finished(failure=f"{type(exc).__name__}: {exc}")
        except Exception as exc:  # an answer a broken or hostile board made up
            board.close()
            detail = (str(exc).splitlines() or [""])[0][:200]
            finished = _Finished(
                failure=f"BoardMisbehaved: sent an answer this kernel cannot use ({type(exc).__name__}:"
                f" {detail}); closed the link. The next cell reconnects."
            )
        finally:
            out.put((member.label, finished))

    def interrupt(self) -> None:
        """Stop the cell on every board still running it (now, or as soon as it has reached the board)."""
        self._interrupted.set()
        with self._lock:
            running = list(self._running.items())
        for label, board in running:
            threading.Thread(target=self._interrupt_one, args=(label, board), daemon=True).start()

    def _interrupt_one(self, label: str, board: Board) -> None:
        while True:
            with self._lock:
                if label not in self._running:
                    return
            cell_id = board.running_cell_id
            if cell_id is not None and board.interrupt(cell_id):
                return
            time.sleep(INTERRUPT_RETRY)

    def gather(self, expression: str) -> dict:
        """expression's value on every board at once: {label: value}; BoardFailed(line) for a board
        that gave none. Values Python writes as literals arrive as themselves, others as repr text."""
        source = f"repr((\n{expression}\n))"

        def one(member: Member) -> object:
            answer = member.board.evaluate({"value": source}).get("value")
            if isinstance(answer, dict) and answer.get("status") == "ok":
                text = (answer.get("data") or {}).get("text/plain")
                if not isinstance(text, str):
                    raise BadOutput("the value has no text")
                return _literal(_literal(text))
            ename, evalue, _ = check_error(answer)
            raise _Failure(f"{ename}: {evalue}")

        return {
            label: BoardFailed(problem) if problem is not None else value
            for label, problem, value in _each(self.members, one)
        }

    def close(self, keep: Board | None = None) -> None:
        """Close every board's link (their sessions stay on the boards), except `keep`."""
        for member in self.members:
            if member.board is not keep:
                member.board.close()


class _Failure(Exception):
    """One line, as is (no exception type in front)."""


def _literal(text: str) -> object:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return text


def _each(members: list[Member], work: Callable[[Member], object]) -> list[tuple[str, str | None, object]]:
    """work(member) for every member at once, a thread each: [(label, None or the failure line, value)]."""
    results: list = [(None, None)] * len(members)

    def run(index: int, member: Member) -> None:
        try:
            results[index] = (None, work(member))
        except _Failure as exc:
            results[index] = (str(exc), None)
        except BoardError as exc:
            results[index] = (f"{type(exc).__name__}: {exc}", None)
        except Exception as exc:
            detail = (str(exc).splitlines() or [""])[0][:200]
            line = f"BoardMisbehaved: an answer this kernel cannot use ({type(exc).__name__}: {detail})"
            results[index] = (line, None)

    threads = [threading.Thread(target=run, args=(i, m), daemon=True) for i, m in enumerate(members)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return [(member.label, *results[i]) for i, member in enumerate(members)]


class ImageGrid:
    """The live images of one board variable on several boards, side by side in one display.

    Each board has its own LiveImagePump (liveimage.py); their displays are drawn here as cells of one
    HTML grid, updated in place (at most every GRID_GAP s) under one display id.
    """

    def __init__(self, name: str, labels: list[str], parent: dict, publish: Publisher) -> None:
        self.name = name
        self.parent = parent
        self.display_id = uuid.uuid4().hex
        self._publish = publish
        self._cells = {
            label: _grid_cell(label, {"text/plain": "waiting for the first frame"}) for label in labels
        }
        self._shown = False
        self._last = 0.0
        self._timer: threading.Timer | None = None
        self._lock = threading.Lock()

    def publisher(self, label: str) -> Publisher:
        """What the LiveImagePump of board `label` publishes through: its frames become that cell."""

        def publish(msg_type: str, content: dict, parent: dict) -> None:
            self.update(label, content.get("data") or {})

        return publish

    def update(self, label: str, data: dict) -> None:
        with self._lock:
            self._cells[label] = _grid_cell(label, data)
            if not self._shown or self._timer is not None:
                return
            wait = self._last + GRID_GAP - time.monotonic()
            if wait > 0:
                self._timer = threading.Timer(wait, self._send_update)
                self._timer.daemon = True
                self._timer.start()
                return
            self._send("update_display_data")

    def show(self) -> None:
        """The grid's first display (in the cell that called display())."""
        with self._lock:
            self._send("display_data")
            self._shown = True

    def _send_update(self) -> None:
        with self._lock:
            self._timer = None
            self._send("update_display_data")

    def _send(self, msg_type: str) -> None:
        cells = "".join(self._cells.values())
        data = {
            "text/html": f'<div style="display:flex;flex-wrap:wrap;gap:8px">{cells}</div>',
            "text/plain": f"<live images of {self.name} on {', '.join(self._cells)}>",
        }
        content = {"data": data, "metadata": {}, "transient": {"display_id": self.display_id}}
        self._publish(msg_type, content, self.parent)
        self._last = time.monotonic()


def _grid_cell(label: str, data: dict) -> str:
    caption = f'<figcaption style="text-align:center">{html.escape(label)}</figcaption>'
    for mime in ("image/jpeg", "image/png", "image/gif"):
        payload = data.get(mime)
        if isinstance(payload, str) and _BASE64.fullmatch(payload):
            body = f'<img src="data:{mime};base64,{payload}" style="max-width:100%"/>'
            break
    else:
        body = f"<pre>{html.escape(str(data.get('text/plain', '')))}</pre>"
    return f'<figure style="margin:0;flex:1 1 240px;max-width:480px">{body}{caption}</figure>'


_BASE64 = re.compile(r"[A-Za-z0-9+/]*={0,2}")


class Fleet:
    """The kernel's several-boards commands: %%boards cells, on(), gather() and live images of a group.

    current_board() is the kernel's one board (reused when a group names its address); publish sends
    an IOPub message of the request being handled; publish_to_cell one of a given cell, from any thread.
    """

    def __init__(
        self,
        session_id: str,
        current_board: Callable[[], Board],
        publish: Callable[[str, dict], None],
        publish_to_cell: Publisher,
    ) -> None:
        self.session_id = session_id
        self._current_board = current_board
        self._publish = publish
        self._publish_to_cell = publish_to_cell
        self.group: BoardGroup | None = None  # the group of self.on(...), for the cells after it
        self._running: BoardGroup | None = None  # the group whose cell runs now (for an interrupt)
        self._pumps: dict[tuple[str, str], LiveImagePump] = {}  # (variable, board label) -> its pump

    # ------------------------------------------------------------ the kernel's hooks
    def takes(self, code: str) -> bool:
        """Whether the cell is the fleet's: a %%boards cell, or board code while a group is active."""
        if self.group is None:
            return MAGIC.match(code) is not None
        if MAGIC.match(code):
            return True
        from .commands import has_board_code

        return has_board_code(code)

    def interrupt(self) -> None:
        """Ctrl-C during a request: stop the running group cell on every board (from a signal handler)."""
        group = self._running
        if group is not None:
            # not here: the signal may have landed while this thread holds the group's lock
            threading.Thread(target=group.interrupt, name="interrupt group", daemon=True).start()

    @property
    def displaying(self) -> bool:
        return any(pump.names for pump in list(self._pumps.values()))

    def close(self) -> None:
        self.stop_display()
        for pump in self._pumps.values():
            pump.close()
        if self.group is not None:
            self.group.close(keep=self._current_board())

    # ------------------------------------------------------------ cells
    def run_cell(self, code: str, count: int, silent: bool, store_history: bool = True) -> dict:
        """Run a %%boards cell (or any cell while a group is active) on its boards; the execute reply."""
        match = MAGIC.match(code)
        made: list[Board] = []
        if match is not None:
            names = match.group("names").split()
            body = code[match.end() :]  # starts with the magic line's newline: line numbers stay
            if names:
                group, problems, made = self._make_group(names)
            elif self.group is not None:
                group, problems = self.group, []
            else:
                return self._error(
                    "BoardGroupError", "name the boards after %%boards (pi1 pi2, HOST:PORT, or all)"
                )
        else:
            group, problems, body = self.group, [], code
        for problem in problems:
            self._publish("stream", {"name": "stderr", "text": problem + "\n"})
        if not group.members:
            return self._error("BoardGroupError", "no board to run the cell on")
        try:
            return self._run_group(group, to_board_code(body), count, silent, store_history, body)
        finally:
            for board in made:
                board.close()

    def _run_group(self, group: BoardGroup, code: str, count: int, silent: bool, store_history: bool, raw):
        streams = LabelledStreams(self._publish)
        boards = {member.label: member.board for member in group.members}
        failures: list[tuple[str, str]] = []
        self._running = group
        try:
            cell = group.run_cell(
                code,
                f"<cell-{count}>",
                silent,
                count if store_history else None,
                None if raw == code else raw,
            )
            checked = time.monotonic()
            for label, item in cell:
                if time.monotonic() - checked >= TICK:  # lines that waited long enough for their end
                    streams.flush(older_than=PARTIAL_LINE_AGE)
                    checked = time.monotonic()
                if item is None:
                    continue
                if isinstance(item, _Finished):
                    streams.flush(label)
                    failure = item.failure or self._finish(label, boards[label], item.outcome, count, silent)
                    if failure:
                        failures.append((label, failure))
                        self._publish("stream", {"name": "stderr", "text": f"[{label}] {failure}\n"})
                elif isinstance(item, Notice):
                    streams.write(label, "stderr", f"rpyc_ikernel: {item.text}\n")
                else:
                    self._output(label, boards[label], item, streams)
        finally:
            self._running = None
            streams.flush()
        if not failures:
            return {"status": "ok", "user_expressions": {}, "payload": []}
        which = ", ".join(label for label, _ in failures)
        total = len(group.members)
        interrupted = all(line.startswith("KeyboardInterrupt") for _, line in failures)
        ename = "KeyboardInterrupt" if interrupted else "BoardGroupError"
        others = "; the others finished" if len(failures) < total else ""
        return self._error(ename, f"{len(failures)} of {total} boards failed ({which}){others}")

    def _finish(self, label: str, board: Board, outcome: CellOutcome, count: int, silent: bool) -> str | None:
        """Show one board's result under its label; its error as one line (returned)."""
        try:
            reply = outcome.reply
            if reply.get("status") == "error":
                ename, evalue, _ = check_error(reply)
                return f"{ename}: {evalue}" if evalue else ename
            if outcome.result is not None and not silent:
                if not isinstance(outcome.result, dict):
                    raise BadOutput("a cell's result is not a mapping")
                data, metadata = check_bundle(
                    outcome.result.get("data"), outcome.result.get("metadata"), board.trusted
                )
                text = data.get("text/plain", "")
                data["text/plain"] = f"Out[{label}]:" + ("\n" if "\n" in text else " ") + text
                if set(data) != {"text/plain"}:  # an image or HTML shows without its text: a label first
                    self._publish("stream", {"name": "stdout", "text": f"Out[{label}]:\n"})
                self._publish("display_data", {"data": data, "metadata": metadata, "transient": {}})
        except BadOutput as exc:
            return f"BoardMisbehaved: {exc}"
        return None

    def _output(self, label: str, board: Board, event: object, streams: LabelledStreams) -> None:
        if isinstance(event, dict) and event.get("msg_type") == "debug_event":
            return  # the debugger follows the kernel's one board only
        try:
            msg_type, content = check_event(event, board.trusted)
        except BadOutput as exc:
            streams.write(label, "stderr", f"rpyc_ikernel: dropped board output: {exc}\n")
            return
        if msg_type == "stream":
            streams.write(label, content["name"], content["text"])
            return
        if msg_type == "clear_output":
            return  # it would clear every board's output: a group keeps them all
        streams.flush(label)  # this board's lines before its display
        display_id = content["transient"].get("display_id")
        if display_id is not None:  # two boards may use one display id: each keeps its own
            content["transient"]["display_id"] = f"{label}/{display_id}"
        data = content["data"]
        if set(data) == {"text/plain"}:
            data["text/plain"] = f"[{label}] {data['text/plain']}"
        elif msg_type == "display_data":
            self._publish("stream", {"name": "stdout", "text": f"[{label}]:\n"})
        self._publish(msg_type, content)

    def _error(self, ename: str, evalue: str) -> dict:
        content = {"ename": ename, "evalue": evalue, "traceback": [f"{ename}: {evalue}"]}
        self._publish("error", content)
        return {"status": "error", **content}

    # ------------------------------------------------------------ groups
    def _make_group(self, names: list[str]) -> tuple[BoardGroup, list[str], list[Board]]:
        """The group of these names: (group, one line per name left out, the boards made for it)."""
        resolved, problems = resolve_targets(list(names))
        known = {}
        for board in [self._current_board(), *(m.board for m in (self.group.members if self.group else []))]:
            known.setdefault((board.address.host, board.address.port), board)
        members, made, seen = [], [], {}
        for label, address, tls in resolved:
            key = (address.host, address.port)
            if key in seen:
                problems.append(f"[{label}] is board {address} again (as {seen[key]}); left out")
                continue
            if label in (m.label for m in members):
                problems.append(f"[{label}] named twice; left out")
                continue
            seen[key] = label
            board = known.get(key)
            if board is None:
                credentials = Credentials.from_environment()
                if tls:
                    credentials = credentials.overridden(tls=True)
                board = Board(address, self.session_id, credentials)
                made.append(board)
            members.append(Member(label, board))
        return BoardGroup(members), problems, made

    def on(self, *names: str) -> None:
        """Run the cells after this one on these boards at once; no names: back to the one board."""
        current = self._current_board()
        if not names:
            for stopped in self.stop_display():
                print(f"Stopped live image {stopped}")
            if self.group is not None:
                self.group.close(keep=current)
                self.group = None
            print(f"Cells run on board {current.address} again")
            return
        for name in names:
            if not isinstance(name, str):
                raise ValueError(
                    f'on() takes board names or addresses, e.g. self.on("pi1", "pi2"); got {name!r}'
                )
        group, problems, made = self._make_group(list(names))
        if problems or not group.members:
            for board in made:
                board.close()
            raise FleetError(("; ".join(problems) or "no board named") + "; the boards in use did not change")
        for stopped in self.stop_display():  # they showed the boards of the group before
            print(f"Stopped live image {stopped}")
        old, self.group = self.group, group
        if old is not None:
            for member in old.members:
                if member.board is not current and all(member.board is not m.board for m in group.members):
                    member.board.close()
        lines = []
        for label, problem in group.connect():
            board = next(m.board for m in group.members if m.label == label)
            if problem is None:
                info = board.info
                lines.append(
                    f"[{label}] {board.address}: Python {info.get('python', '?')} [{board.security}]"
                )
            else:
                lines.append(f"[{label}] {problem}")
        print(f"Cells run on {len(group.members)} boards at once: {', '.join(group.labels)}")
        print("\n".join(lines))
        print("# exec(self.on()) goes back to one board")

    def gather(self, expression: str, *names: str) -> dict:
        """{board label: value of expression there}, from the named boards, the group, or the one board."""
        if not isinstance(expression, str):
            raise ValueError(
                f'gather() takes an expression as text, e.g. self.gather("temp()"); got {expression!r}'
            )
        try:
            ast.parse(expression, mode="eval")
        except SyntaxError as exc:
            raise ValueError(f"gather() takes one expression: {exc.msg} in {expression!r}") from None
        made: list[Board] = []
        if names:
            group, problems, made = self._make_group(list(names))
        elif self.group is not None:
            group, problems = self.group, []
        else:
            board = self._current_board()
            group, problems = BoardGroup([Member(str(board.address), board)]), []
        try:
            for problem in problems:
                print(problem, file=sys.stderr)
            values = group.gather(expression)
        finally:
            for board in made:
                board.close()
        for label, value in values.items():
            if isinstance(value, BoardFailed):
                print(f"[{label}] {value}", file=sys.stderr)
        return values

    # ------------------------------------------------------------ live images
    def display(self, name: str, interval: float, parent: dict) -> None:
        """Live images of board variable `name` on every board of the group, in one grid."""
        group = self.group
        self.stop_display(name)
        grid = ImageGrid(name, group.labels, parent, self._publish_to_cell)

        def start(member: Member) -> None:
            pump = LiveImagePump(
                lambda board=member.board: board, self.session_id, grid.publisher(member.label)
            )
            self._pumps[(name, member.label)] = pump
            pump.start(name, image_interval(interval), parent)

        for label, problem, _ in _each(group.members, start):
            if problem is not None:
                grid.update(label, {"text/plain": problem})
        grid.show()

    def stop_display(self, name: str | None = None) -> list[str]:
        """Stop the group's live images of `name` (or all); the names stopped, with their boards."""
        stopped: dict[str, list[str]] = {}
        for (variable, label), pump in list(self._pumps.items()):
            if name is None or variable == name:
                if pump.stop(variable):
                    stopped.setdefault(variable, []).append(label)
                self._pumps.pop((variable, label), None)
                threading.Thread(target=pump.close, daemon=True).start()
        return [f"{variable} on {', '.join(labels)}" for variable, labels in stopped.items()]
