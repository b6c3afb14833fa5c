"""A connection to the board beside the main link, for work that must not wait behind a running cell.

The board serves one connection's requests one after another, and the main link is busy with the
running cell's long-polls. A side link has its own thread on the board, so an interrupt, a
completion, a batch of live-image frames or a file chunk sent through it is answered at once.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

import rpyc
from rpyc.core import consts

from .errors import BoardConnectionLost
from .link import CALL_TIMEOUT, close_connection, link_alive, tune_for_frames

if TYPE_CHECKING:
    from .connector import Dialer


class SideLink:
    """A connection of its own to a board, with the agent loaded, tuned for its job.

    `board` opens it: a Connector (connector.py), or a Board, which passes on to its own. for_frames
    tunes it for live images (uncompressed, one read per request); otherwise rpyc's defaults hold
    (small requests: interrupt, completion; a transfer sets compression itself). With session_id,
    the kernel's agent session is attached in the same round trip, and its methods are in `methods`.
    A setup that fails (this, or a subclass's prepare()) closes the connection; nothing is left open.
    """

    def __init__(self, board: Dialer, for_frames: bool = False, session_id: str | None = None) -> None:
        self.board = board  # what opened it: the live-image pump tells a board's links by it
        self.tuned = False  # the board's end reads each frames request in one call
        self._board_end = None  # see board_end()
        self.conn, self.attached = board.open_attached(session_id=session_id)
        try:
            if for_frames:
                self.tuned = tune_for_frames(self.conn, self.agent)
            self.prepare()
        except (EOFError, OSError, rpyc.AsyncResultTimeout) as exc:  # a plain netref look-up failed
            close_connection(self.conn, dead=True)
            raise BoardConnectionLost(f"lost the connection to the board ({exc or type(exc).__name__})")
        except BaseException:
            close_connection(self.conn, dead=True)
            raise

    @property
    def agent(self):
        """The agent package on the board (netref): agent.read_images, agent.open_upload, ..."""
        return self.attached.agent

    @property
    def methods(self) -> dict:
        """The session's methods (wire.SESSION_METHODS), if a session_id was given."""
        return self.attached.methods

    def prepare(self) -> None:
        """A subclass's own setup (e.g. fetching agent functions as netrefs), cleaned up like the rest."""

    def board_end(self):
        """The board's own rpyc Connection of this link (a netref), fetched once in one round trip.

        Agent functions that tune the board's end of this link take it as an argument.
        """
        if self._board_end is None:
            root = self.conn.root
            result = self.conn.async_request(consts.HANDLE_CALLATTR, root, "getconn", (), ())
            result.set_expiry(CALL_TIMEOUT)
            self._board_end = result.value
        return self._board_end

    @property
    def closed(self) -> bool:
        return self.conn.closed

    def close(self) -> None:
        close_connection(self.conn)

    def __enter__(self) -> SideLink:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


class SideLinkSlot:
    """A board's side link (interrupt, completion while a cell runs, file transfer), kept ready.

    warm() opens it in the background (the kernel calls it right after each main connect), so the
    first interrupt or transfer does not pay a whole connect (4+ round trips: ~0.5 s at 100 ms RTT).
    get() hands out the open link, waits for one being opened, or opens one itself. close() ends it;
    an open still under way is then discarded. Only whole SideLinks are swapped under the lock, so
    the kernel's threads (an interrupt's, the shell's) can share the slot.
    """

    OPEN_WAIT = 120.0  # seconds get() waits for a background open at most (the connect bounds it anyway)

    def __init__(self, dialer: Dialer, session_id: str) -> None:
        self.dialer = dialer  # the board's Connector
        self.session_id = session_id
        self._lock = threading.Lock()
        self._open_lock = threading.Lock()  # one synchronous open at a time
        self._link: SideLink | None = None
        self._opening: threading.Event | None = None  # set when the background open ended
        self._generation = 0  # close() bumps it: a background open of an older one is discarded

    @property
    def ready(self) -> bool:
        """An open side link is waiting (one the board closed or reset meanwhile is not)."""
        link = self._link
        return link is not None and link_alive(link.conn)

    def warm(self) -> None:
        """Open the side link in the background, unless one is open or being opened."""
        with self._lock:
            if self.ready or self._opening is not None:
                return
            opening = self._opening = threading.Event()
            generation = self._generation
        thread = threading.Thread(
            target=self._open_in_background, args=(opening, generation), name="side link", daemon=True
        )
        thread.start()

    def _open_in_background(self, opening: threading.Event, generation: int) -> None:
        link = None
        try:
            link = SideLink(self.dialer, session_id=self.session_id)
            link.board_end()  # transfers tune the board's end through it: fetched now, not then
        except Exception:  # get() opens it again and reports the problem to whoever needs the link
            if link is not None:
                link.close()
            link = None
        with self._lock:
            if self._opening is opening:
                self._opening = None
            if link is not None and generation == self._generation and not self.ready:
                self._link, link = link, None
        if link is not None:  # closed (or replaced) meanwhile
            link.close()
        opening.set()

    def get(self) -> SideLink:
        """The open side link; opened now (in this thread) if none is open or being opened."""
        with self._lock:
            if self.ready:
                return self._link
            opening = self._opening
        if opening is not None:
            opening.wait(self.OPEN_WAIT)
        with self._open_lock:
            with self._lock:
                if self.ready:
                    return self._link
                generation = self._generation
            link = SideLink(self.dialer, session_id=self.session_id)
            with self._lock:
                if generation == self._generation and not self.ready:
                    self._link = link
                    return link
            link.close()
            raise BoardConnectionLost("the board link was closed while its side link was opened")

    def drop(self, link: SideLink) -> None:
        """Forget `link` (a transfer left it mid-message) and open a fresh one in the background."""
        with self._lock:
            if self._link is link:
                self._link = None
        link.close()
        self.warm()

    def close(self) -> None:
        with self._lock:
            self._generation += 1
            link, self._link = self._link, None
        if link is not None:
            link.close()
