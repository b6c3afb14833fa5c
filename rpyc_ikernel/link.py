"""rpyc-level helpers every connection to a board uses: bounded calls, closing, socket tuning.

Every call to the board is bounded in time: ``call`` and ``PendingCall`` turn a timeout or a broken
socket into BoardConnectionLost (closing the connection, which a dead link would otherwise hang).
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

import rpyc
from rpyc.core.service import VoidService
from rpyc.core.stream import SocketStream

from .bootstrap import BoardConnection
from .errors import BoardConnectionLost, describe_socket_error

CALL_TIMEOUT = 8.0  # seconds any single request may take beyond its own wait


class KernelSideService(VoidService):
    """The kernel's end of the link: drives the board's SlaveService and exposes nothing back.

    It asks the board for nothing on connect (rpyc's MasterService would: ~8 round trips); its
    BoardConnection fetches the classic conveniences on first use. A board running rpyc's
    full-duplex ClassicService asks its peer for modules on connect; it gets None, so the board can
    never reach into the kernel's machine.
    """

    __slots__ = ()
    _protocol = BoardConnection

    def exposed_getmodule(self, name):
        return None

    exposed_namespace = None

    def exposed_execute(self, text):
        raise PermissionError("the kernel does not run code sent by the board")

    exposed_eval = exposed_execute


class ReplayStream(SocketStream):
    """A SocketStream that first hands out bytes already read from the socket during the handshake."""

    __slots__ = ("early",)

    def __init__(self, sock: socket.socket, early: bytes = b"") -> None:
        super().__init__(sock)
        self.early = early

    def poll(self, timeout) -> bool:
        return bool(self.early) or super().poll(timeout)

    def read(self, count: int) -> bytes:
        if not self.early:
            return super().read(count)
        head, self.early = self.early[:count], self.early[count:]
        return head + (super().read(count - len(head)) if count > len(head) else b"")


def tune_socket(sock: socket.socket) -> None:
    """No Nagle delay for small requests; TCP keepalive so a board that vanished is noticed when idle."""
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for option, value in (("TCP_KEEPIDLE", 10), ("TCP_KEEPINTVL", 5), ("TCP_KEEPCNT", 3)):
        if hasattr(socket, option):
            sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, option), value)


def tune_for_bulk(conn: rpyc.Connection, agent, compress: bool = False) -> None:
    """Make a side connection fit for bulk data: compression as asked, no Nagle delay on the board.

    rpyc compresses large messages by default; zlib costs more than it saves for binary data on a
    fast link (see DESIGN.md's measurements), so transfers turn it off on their own connection.
    The main link keeps rpyc's defaults.
    """
    conn._channel.compress = compress
    board_end = call(conn, conn.root.getconn, timeout=CALL_TIMEOUT)  # the board's own Connection
    call(conn, agent.tune_link, board_end, compress, timeout=CALL_TIMEOUT)


def tune_for_frames(conn: rpyc.Connection, agent) -> bool:
    """Turn off rpyc's zlib compression at both ends of conn, and let the agent make the board's end
    read each request in one call; False if the board refused (slower, but frames still flow)."""
    conn._channel.compress = False
    try:
        agent.prepare_frame_connection(conn.root.getconn())  # the board's end of this same connection
    except (AttributeError, TypeError, ValueError):
        return False
    return True


def close_connection(conn: rpyc.Connection, dead: bool = False) -> None:
    """Close without hanging: rpyc's close() waits for the peer's answer, which a dead link never sends."""
    try:
        if dead:
            conn._channel.close()
        conn._config["sync_request_timeout"] = 1.0
        conn.close()
    except Exception:
        pass


def call(conn: rpyc.Connection, method: Callable, *args, timeout: float):
    """Call a remote method, waiting at most `timeout` seconds; link problems become BoardError."""
    try:
        result = rpyc.async_(method)(*args)
        result.set_expiry(timeout)
        return result.value
    except rpyc.AsyncResultTimeout:
        close_connection(conn, dead=True)
        raise BoardConnectionLost(
            f"the board did not answer within {timeout:.0f} s; the link looks dead"
        ) from None
    except (EOFError, OSError) as exc:
        close_connection(conn, dead=True)
        raise BoardConnectionLost(
            f"lost the connection to the board ({describe_socket_error(exc)})"
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
                f"lost the connection to the board ({describe_socket_error(exc)})"
            ) from None

    @property
    def ready(self) -> bool:
        """The answer (or an error) is in: result() returns at once."""
        return self._result.ready

    def wait(self, timeout: float) -> bool:
        """Serve the connection until the answer is in (True) or `timeout` seconds passed (False).

        Other answers that arrive meanwhile are dispatched to their own calls, so several calls can
        be in flight on one connection (live images pipeline their requests this way).
        """
        deadline = time.monotonic() + timeout
        while not self._result.ready:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            try:
                self._conn.serve(remaining)
            except (EOFError, OSError) as exc:
                self._conn.close()
                raise BoardConnectionLost(
                    f"lost the connection to the board ({describe_socket_error(exc)})"
                ) from None
        return True

    def abandon(self) -> None:
        """Give up on the answer: the link is taken for dead and closed."""
        self._conn.close()

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
                f"lost the connection to the board ({describe_socket_error(exc)})"
            ) from None
