"""How to reach one board: its address, credentials, tunnel and deadlines; opens connections to it.

A :class:`Connector` opens connections with the agent loaded (and a session attached, if asked) in
the fewest round trips: TCP, TLS and the token handshake (handshake.py), the rpyc connection in the
board's wire (compat.py), then the agent (bootstrap.py). The main link of a Board, its side links
(sidelink.py), live images and file transfers all open theirs here, so a failure to reach the board
is worded in one place (:meth:`Connector.not_rpyc`, :meth:`Connector.hint`). A connector keeps no
session and no link: the session, cells and reconnecting are the Board's (board.py).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import rpyc

from . import bootstrap, compat, settings
from .checks import MAX_SECONDS, seconds
from .errors import BoardConnectionLost, BoardError, BoardUnreachable
from .handshake import BoardHandshake, Credentials, Handshake, connect_budget, is_loopback
from .link import CALL_TIMEOUT, BoardStream, KernelSideService, close_connection, silence_limit

DEFAULT_HOST = settings.HOST.default
DEFAULT_PORT = settings.PORT.default
CONNECT_TIMEOUT = 3.5  # seconds to reach the board and load the agent (more on a slow link, see handshake)
SLOW_LINK_RTT = 0.02  # seconds of round trip above which work is done ahead while the link is slow


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
        return cls(settings.HOST.read(environ), settings.PORT.read(environ))


class Tunnel(Protocol):
    """A local end for a board that is not dialled directly (an adb forward, see adb.AdbForward).

    The connector opens it before it dials; the Board closes it with its link, so the tunnel lives
    exactly as long as the board is in use and is made again on a reconnect.
    """

    def open(self) -> Address:
        """Make the tunnel if it is not there; the local address to dial. Idempotent."""

    def close(self) -> None:
        """Remove the tunnel (connections already made through it may finish)."""

    def describe(self) -> str:
        """One line for users: what the tunnel connects."""

    # optional: read_token() -> handshake.BoardToken, the board's own token read through the tunnel


class Dialer(Protocol):
    """What opens a connection with the agent loaded: a Connector (a Board passes on to its own)."""

    def open_attached(
        self, deadline: float | None = None, session_id: str | None = None, notices: list | None = None
    ) -> tuple[rpyc.Connection, bootstrap.Attached]: ...


def connect_timeout(timeout: object) -> float:
    """connect_remote's timeout= checked (None: CONNECT_TIMEOUT)."""
    if timeout is None:
        return CONNECT_TIMEOUT
    return seconds(timeout, "timeout", example=5, minimum=0.1, maximum=MAX_SECONDS)


class Connector:
    """One board's address, credentials, tunnel and connect timeout; opens attached connections.

    `security` and `rtt` are what the last handshake established and measured (for status() and
    for the deadlines of the next connect).
    """

    problem: str | None = None  # why this board cannot be used at all (see MisconfiguredConnector)

    def __init__(
        self,
        address: Address,
        credentials: Credentials | None = None,
        connect_timeout: float = CONNECT_TIMEOUT,
        tunnel: Tunnel | None = None,
    ) -> None:
        self.address = address
        self.credentials = credentials if credentials is not None else Credentials.from_environment()
        self.connect_timeout = connect_timeout
        self.tunnel = tunnel
        self.security = "not connected"  # what the last handshake established, for status()
        self.rtt = 0.0  # the round trip the last connect measured (seconds)

    @classmethod
    def configured(
        cls, address: Address, timeout: object = None, tunnel: Tunnel | None = None, **credentials
    ) -> Connector:
        """A connector from the settings (environment or kernelspec) with the user's keywords on top:
        timeout= checked, credentials (token, tls, ca, certfile, keyfile, allow_open, forward) where given."""
        merged = Credentials.from_environment().overridden(**credentials)
        return cls(address, merged, connect_timeout(timeout), tunnel)

    @property
    def connect_budget(self) -> float:
        """Seconds a new connection may take: connect_timeout, or more on a link measured as slow."""
        return connect_budget(self.connect_timeout, self.rtt)

    @property
    def silence_limit(self) -> float:
        """Seconds the link may stay silent while an answer is due before it is taken for dead."""
        return silence_limit(self.rtt)

    def route(self) -> str | None:
        """How the board is reached besides its address (the tunnel's line), or None when dialled directly."""
        return self.tunnel.describe() if self.tunnel is not None else None

    def hint(self) -> str:
        """What to do when nothing answers: start the server so that this machine can reach it."""
        port = self.address.port
        host = self.address.host
        if host == "localhost" or is_loopback(host):
            start = f"start the board server there (python3 server.py --port {port})"
        else:  # without --host the server listens on its own loopback only: this machine cannot reach it
            start = (
                f"start the board server there listening on its network (python3 server.py --host 0.0.0.0"
                f" --port {port}, or --host with the board's own address; without --host it listens on"
                " 127.0.0.1 only)"
            )
        return f'{start}, or pick a board with # exec(self.connect_remote("HOST", port=PORT))'

    def not_rpyc(self, exc: BaseException) -> BoardUnreachable:
        """The error for a peer that accepted the connection but did not answer as a board server."""
        # rpyc's AsyncResultTimeout is the builtin TimeoutError: keep the handshake's own explanation
        no_answer = isinstance(exc, BoardConnectionLost) or str(exc) == "result expired"
        reason = "no answer" if no_answer else f"{type(exc).__name__}: {exc}"
        return BoardUnreachable(
            f"board {self.address} accepted the connection but did not answer as an rpyc_ikernel"
            f" or rpyc classic server ({reason}); check the host and port, or {self.hint()}"
        )

    def open_connection(self, deadline: float | None = None) -> tuple[rpyc.Connection, object]:
        """A new connection to this board with the agent loaded: (conn, agent package netref)."""
        conn, attached = self.open_attached(deadline)
        return conn, attached.agent

    def open_attached(
        self, deadline: float | None = None, session_id: str | None = None, notices: list | None = None
    ) -> tuple[rpyc.Connection, bootstrap.Attached]:
        """A new connection with the agent loaded and session_id (if given) attached, in the fewest
        round trips (see bootstrap.py), before `deadline` (time.monotonic()) if given.

        The handshake's lines for the user (a token read through adb, ...) are appended to `notices`
        when it is a list (the main link's connect shows them; side links leave them out).
        """
        early: list = []  # the rpyc connection made during the handshake, if it was

        def start_rpyc(sock, wire: int) -> None:  # right after the token proof: GETROOT goes with it
            stream = BoardStream(sock)
            conn = compat.connect(stream, KernelSideService, {"allow_pickle": False}, wire)
            early.append(conn)
            conn.request_root()

        try:
            shake = self._open_socket(deadline, start_rpyc)
        except BaseException:
            for conn in early:
                close_connection(conn, dead=True)
            raise
        if notices is not None:
            notices.extend(shake.notices)
        deadline = shake.deadline
        if shake.rtt >= SLOW_LINK_RTT:  # the agent's bundle is made while the probe travels
            bootstrap.prepare_shipment()
        try:
            if early:
                conn = early[0]
                stream = conn.stream  # made before the round trip was known; the handshake's
                stream.silence_limit = silence_limit(shake.rtt)  # reads left the socket's timeout short
                stream.sock.settimeout(stream.silence_limit)
            else:
                stream = BoardStream(shake.sock, shake.early, silence_limit(shake.rtt))
                conn = compat.connect(stream, KernelSideService, {"allow_pickle": False}, shake.wire)
            conn.set_call_timeout(max(0.5, deadline - time.monotonic()))
        except Exception as exc:
            shake.sock.close()
            raise self.not_rpyc(exc) from None
        try:
            attached = bootstrap.attach(conn, session_id, max(0.5, deadline - time.monotonic()))
        except Exception as exc:
            close_connection(conn, dead=True)
            raise self.not_rpyc(exc) from None
        conn.set_call_timeout(CALL_TIMEOUT)
        return conn, attached

    def _open_socket(self, limit: float | None, after_proof: Callable | None = None) -> Handshake:
        """TCP connect, TLS, and handshake 2 (handshake.py): a socket ready for rpyc, in the board's wire."""
        dial = self.tunnel.open() if self.tunnel is not None else self.address
        far_end = (self.address.host, self.address.port) if self.tunnel is not None else None
        handshake = BoardHandshake(
            self.address.host,
            str(self.address),
            self.credentials,
            self.not_rpyc,
            self.hint(),
            after_proof,
            board_token=getattr(self.tunnel, "read_token", None),  # an adb board's own token file
            far_end=far_end,  # the board server sees our forward's far end, not our local port
        )
        result = handshake.open(dial.host, dial.port, self.connect_budget, limit)
        self.security = result.security
        self.rtt = result.rtt
        return result

    def close(self) -> None:
        """Remove the tunnel, if any (the Board closes its links first)."""
        if self.tunnel is not None:
            self.tunnel.close()


class MisconfiguredConnector(Connector):
    """Stands in for the default board's connector when the settings are wrong: every connection
    (main link, side links, live images, transfers) fails with the reason, so each cell says what to fix."""

    def __init__(self, problem: str) -> None:
        super().__init__(Address(), Credentials())
        self.problem = problem

    def open_attached(
        self, deadline: float | None = None, session_id: str | None = None, notices: list | None = None
    ) -> tuple[rpyc.Connection, bootstrap.Attached]:
        raise BoardError(f'{self.problem}; or pick a board with # exec(self.connect_remote("HOST"))')
