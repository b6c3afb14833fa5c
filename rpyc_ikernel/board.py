"""The link to one board: connect, load the agent, run cells, interrupt, complete, inspect.

This is the only module that speaks rpyc. Every call to the board is bounded in time: a cell is run
as a series of short long-polls (``Session.poll``), so rpyc's request timeout catches a dead link but
never a long cell.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import rpyc
from rpyc.core.service import MasterService, VoidService
from rpyc.core.stream import SocketStream
from rpyc.utils.factory import connect_stream

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 18812
CONNECT_TIMEOUT = 3.5  # seconds to reach the board and load the agent
CALL_TIMEOUT = 8.0  # seconds any single request may take beyond its own wait
POLL_WAIT = 0.5  # seconds the board may hold a poll open waiting for output
FIRST_WAIT = 0.25  # how long the first round trip of a cell waits for it to finish

AGENT_SOURCE = (Path(__file__).with_name("agent.py")).read_text(encoding="utf-8")
AGENT_VERSION = hashlib.sha256(AGENT_SOURCE.encode("utf-8")).hexdigest()[:16]
AGENT_MODULE = "_rpyc_ikernel_agent"

_LOADER = """
def _rpyc_ikernel_load(source, version):
    import sys, types
    module = sys.modules.get("_rpyc_ikernel_agent")
    if module is None or getattr(module, "AGENT_VERSION", None) != version:
        module = types.ModuleType("_rpyc_ikernel_agent")
        module.__file__ = "<rpyc_ikernel agent>"
        exec(compile(source, module.__file__, "exec"), module.__dict__)
        module.AGENT_VERSION = version
        sys.modules["_rpyc_ikernel_agent"] = module
    return module
"""


class KernelSideService(MasterService, VoidService):
    """The kernel's end of the link: drives the board's SlaveService and exposes nothing back.

    A board running rpyc's full-duplex ClassicService asks its peer for modules on connect; it gets
    None, so the board can never reach into the kernel's machine.
    """

    __slots__ = ()

    def exposed_getmodule(self, name):
        return None

    exposed_namespace = None

    def exposed_execute(self, text):
        raise PermissionError("the kernel does not run code sent by the board")

    exposed_eval = exposed_execute


class BoardError(Exception):
    """A problem with the board link, with a message a user can act on."""


class BoardUnreachable(BoardError):
    """The board could not be reached or did not answer as an rpyc server."""


class BoardConnectionLost(BoardError):
    """The link broke while a request was in flight."""


@dataclass
class Address:
    """Where a board's server listens."""

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"

    @classmethod
    def from_environment(cls, environ: dict | None = None) -> Address:
        """RPYC_IKERNEL_HOST / RPYC_IKERNEL_PORT, else this machine's loopback on port 18812."""
        environ = os.environ if environ is None else environ
        host = environ.get("RPYC_IKERNEL_HOST") or DEFAULT_HOST
        port_text = environ.get("RPYC_IKERNEL_PORT") or str(DEFAULT_PORT)
        try:
            port = int(port_text)
        except ValueError as exc:
            raise BoardError(
                f"RPYC_IKERNEL_PORT={port_text!r} is not a port number; set it to e.g. 18812"
            ) from exc
        return cls(host, port)


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
    session: object
    agent: object
    info: dict = field(default_factory=dict)


def _describe_socket_error(exc: BaseException) -> str:
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return "timed out"
    if isinstance(exc, socket.gaierror):
        return "unknown host name"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__


class Board:
    """A board reached through rpyc classic; keeps one session (namespace) on it across reconnects."""

    def __init__(self, address: Address, session_id: str, connect_timeout: float = CONNECT_TIMEOUT) -> None:
        self.address = address
        self.session_id = session_id
        self.connect_timeout = connect_timeout
        self._link: BoardLink | None = None
        self._lock = threading.RLock()

    # ------------------------------------------------------------ connection
    @property
    def connected(self) -> bool:
        link = self._link
        return link is not None and not link.conn.closed

    def _hint(self) -> str:
        return (
            f"start the board server there (python3 -m rpyc_ikernel.server --port {self.address.port}),"
            ' or pick a board with # exec(self.connect_remote("HOST", port=PORT))'
        )

    def connect(self) -> BoardLink:
        """Open the main link (if not open): connect, load the agent, attach our session."""
        with self._lock:
            if self.connected:
                return self._link
            self.close()
            deadline = time.monotonic() + self.connect_timeout
            conn, agent = self.open_connection()
            try:
                remaining = max(0.5, deadline - time.monotonic())
                session = call(conn, agent.attach, self.session_id, timeout=remaining)
                info = json.loads(call(conn, agent.board_info, timeout=remaining))
            except Exception as exc:
                conn.close()
                raise self._not_rpyc(exc) from None
            self._link = BoardLink(conn=conn, session=session, agent=agent, info=info)
            return self._link

    def open_connection(self) -> tuple[rpyc.Connection, object]:
        """A new connection to this board with the agent loaded: (conn, agent module netref).

        The main link uses one; side jobs that must not wait behind a running cell (live images,
        file transfer) open their own and close it when done.
        """
        deadline = time.monotonic() + self.connect_timeout
        try:
            stream = SocketStream.connect(
                self.address.host, self.address.port, timeout=self.connect_timeout, nodelay=True
            )
        except OSError as exc:
            raise BoardUnreachable(
                f"cannot reach board {self.address}: {_describe_socket_error(exc)}; {self._hint()}"
            ) from None
        try:
            conn = connect_stream(
                stream,
                KernelSideService,
                config={"sync_request_timeout": self.connect_timeout, "allow_pickle": False},
            )
        except Exception as exc:
            stream.close()
            raise self._not_rpyc(exc) from None
        try:
            agent = self._load_agent(conn, max(0.5, deadline - time.monotonic()))
        except Exception as exc:
            conn.close()
            raise self._not_rpyc(exc) from None
        conn._config["sync_request_timeout"] = CALL_TIMEOUT
        return conn, agent

    def _not_rpyc(self, exc: BaseException) -> BoardUnreachable:
        reason = "no answer" if isinstance(exc, BoardConnectionLost) else f"{type(exc).__name__}: {exc}"
        return BoardUnreachable(
            f"board {self.address} accepted the connection but did not answer as an rpyc_ikernel"
            f" or rpyc classic server ({reason}); check the host and port, or {self._hint()}"
        )

    def _load_agent(self, conn: rpyc.Connection, timeout: float):
        """Send the agent's source into the board process once; later connections reuse it."""
        call(conn, conn.execute, _LOADER, timeout=timeout)
        loader = call(conn, conn.namespace.get, "_rpyc_ikernel_load", timeout=timeout)
        return call(conn, loader, AGENT_SOURCE, AGENT_VERSION, timeout=timeout)

    def close(self) -> None:
        """Close the link; the session and its namespace stay on the board."""
        with self._lock:
            link, self._link = self._link, None
        if link is not None:
            try:
                link.conn.close()
            except Exception:
                pass

    @property
    def info(self) -> dict:
        return self._link.info if self._link else {}

    # ------------------------------------------------------------ cells
    def run_cell(
        self, code: str, filename: str, allow_stdin: bool = False, silent: bool = False
    ) -> Iterator[list | InputRequest | CellOutcome]:
        """Run code on the board; yields output events as they come, then one CellOutcome."""
        link = self.connect()
        message = self._request(
            link, link.session.run, code, filename, FIRST_WAIT, allow_stdin, silent, wait=FIRST_WAIT
        )
        if message.get("busy"):
            raise BoardError(
                "the board is still running an earlier cell of this kernel; interrupt it"
                " (Kernel > Interrupt) or restart the board server"
            )
        while True:
            yield from message["events"]
            if "input" in message:
                yield InputRequest(message["input"]["prompt"], message["input"]["password"])
            if message["done"]:
                reply = message["reply"]
                yield CellOutcome(reply=reply, result=reply.pop("result", None))
                return
            message = self._request(link, link.session.poll, POLL_WAIT, wait=POLL_WAIT)

    def answer_input(self, value: str | None) -> None:
        """Hand the user's answer (None for end of input) to the waiting input() on the board."""
        link = self.connect()
        call(link.conn, link.session.provide_input, value or "", value is None, timeout=CALL_TIMEOUT)

    def interrupt(self) -> bool:
        """Stop the running cell (KeyboardInterrupt on the board). True if one was running."""
        link = self._link
        if link is None or link.conn.closed:
            return False
        try:
            return bool(call(link.conn, link.session.interrupt, timeout=CALL_TIMEOUT))
        except Exception:
            return False

    def _request(self, link: BoardLink, method: Callable, *args, wait: float) -> dict:
        try:
            text = call(link.conn, method, *args, timeout=wait + CALL_TIMEOUT)
        except BoardError:
            self.close()
            raise
        return json.loads(text)

    # ------------------------------------------------------------ introspection
    def complete(self, code: str, cursor_pos: int) -> dict:
        link = self.connect()
        return json.loads(call(link.conn, link.session.complete, code, cursor_pos, timeout=CALL_TIMEOUT))

    def inspect(self, code: str, cursor_pos: int, detail_level: int) -> dict:
        link = self.connect()
        text = call(link.conn, link.session.inspect, code, cursor_pos, detail_level, timeout=CALL_TIMEOUT)
        return json.loads(text)

    def evaluate(self, expressions: dict) -> dict:
        link = self.connect()
        text = call(link.conn, link.session.evaluate, json.dumps(expressions), timeout=CALL_TIMEOUT)
        return json.loads(text)


def call(conn: rpyc.Connection, method: Callable, *args, timeout: float):
    """Call a remote method, waiting at most `timeout` seconds; link problems become BoardError."""
    try:
        result = rpyc.async_(method)(*args)
        result.set_expiry(timeout)
        return result.value
    except rpyc.AsyncResultTimeout:
        conn.close()
        raise BoardConnectionLost(
            f"the board did not answer within {timeout:.0f} s; the link looks dead"
        ) from None
    except (EOFError, OSError) as exc:
        conn.close()
        raise BoardConnectionLost(
            f"lost the connection to the board ({_describe_socket_error(exc)})"
        ) from None


class PendingCall:
    """A remote call already sent; `result` waits for its answer (link problems become BoardError)."""

    def __init__(self, conn: rpyc.Connection, method: Callable, *args) -> None:
        self._conn = conn
        try:
            self._result = rpyc.async_(method)(*args)
        except (EOFError, OSError) as exc:
            conn.close()
            raise BoardConnectionLost(
                f"lost the connection to the board ({_describe_socket_error(exc)})"
            ) from None

    def result(self, timeout: float):
        """The answer, waiting at most `timeout` seconds; a dead link becomes BoardConnectionLost."""
        try:
            self._result.set_expiry(timeout)
            return self._result.value
        except rpyc.AsyncResultTimeout:
            self._conn.close()
            raise BoardConnectionLost(
                f"the board did not answer within {timeout:.0f} s; the link looks dead"
            ) from None
        except (EOFError, OSError) as exc:
            self._conn.close()
            raise BoardConnectionLost(
                f"lost the connection to the board ({_describe_socket_error(exc)})"
            ) from None


class FrameLink:
    """The side connection that carries live images: one round trip per batch of frames.

    It is a connection of its own, so frames flow while a cell runs on the main link, and it is
    uncompressed at both ends: JPEG/PNG do not compress, and zlib would only cost time on the board.
    """

    def __init__(self, board: Board) -> None:
        self.board = board
        self.conn, agent = board.open_connection()
        try:
            self.tuned = _tune_for_frames(self.conn, agent)
            self._read_frames = agent.read_frames
        except (EOFError, OSError, rpyc.AsyncResultTimeout) as exc:
            self.conn.close()
            raise BoardConnectionLost(f"lost the connection to the board ({exc or type(exc).__name__})")

    @property
    def closed(self) -> bool:
        return self.conn.closed

    def request(self, session_id: str, wanted: tuple) -> PendingCall:
        """Ask for the frames of ((name, digest), ...); the answer comes from PendingCall.result."""
        return PendingCall(self.conn, self._read_frames, session_id, wanted)

    def close(self) -> None:
        try:
            self.conn.close()
        except Exception:
            pass


def _tune_for_frames(conn: rpyc.Connection, agent) -> bool:
    """Turn off rpyc's zlib compression at both ends of conn, and let the agent make the board's end
    read each request in one call; False if the board refused (slower, but frames still flow)."""
    conn._channel.compress = False
    try:
        agent.prepare_frame_connection(conn.root.getconn())  # the board's end of this same connection
    except (AttributeError, TypeError, ValueError):
        return False
    return True
