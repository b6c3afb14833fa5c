"""A connection to the board beside the main link, for work that must not wait behind a running cell.

The board serves one connection's requests one after another, and the main link is busy with the
running cell's long-polls. A side link has its own thread on the board, so an interrupt, a
completion, a batch of live-image frames or a file chunk sent through it is answered at once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import rpyc

from .errors import BoardConnectionLost
from .link import close_connection, tune_for_bulk, tune_for_frames

if TYPE_CHECKING:
    from .board import Board

Attach = Callable[[rpyc.Connection, object], "tuple[object, dict]"]  # (conn, agent) -> (session, methods)


class SideLink:
    """A connection of its own to `board`, with the agent loaded, tuned for its job.

    compress=None keeps rpyc's defaults (small requests: interrupt, completion); True/False sets
    compression at both ends and turns off Nagle on the board (file transfer); for_frames tunes it
    for live images (uncompressed, one read per request). attach, given (conn, agent), returns the
    kernel's agent session and its methods, for requests made to that session. A setup that fails
    (this, or a subclass's prepare()) closes the connection; nothing is left open.
    """

    def __init__(
        self,
        board: Board,
        compress: bool | None = None,
        for_frames: bool = False,
        attach: Attach | None = None,
    ) -> None:
        self.board = board
        self.session: object = None
        self.methods: dict = {}
        self.tuned = False  # the board's end reads each frames request in one call
        self.conn, self.agent = board.open_connection()
        try:
            if for_frames:
                self.tuned = tune_for_frames(self.conn, self.agent)
            elif compress is not None:
                tune_for_bulk(self.conn, self.agent, compress)
            if attach is not None:
                self.session, self.methods = attach(self.conn, self.agent)
            self.prepare()
        except (EOFError, OSError, rpyc.AsyncResultTimeout) as exc:  # a plain netref look-up failed
            close_connection(self.conn, dead=True)
            raise BoardConnectionLost(f"lost the connection to the board ({exc or type(exc).__name__})")
        except BaseException:
            close_connection(self.conn, dead=True)
            raise

    def prepare(self) -> None:
        """A subclass's own setup (e.g. fetching agent functions as netrefs), cleaned up like the rest."""

    @property
    def closed(self) -> bool:
        return self.conn.closed

    def close(self) -> None:
        close_connection(self.conn)

    def __enter__(self) -> SideLink:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
