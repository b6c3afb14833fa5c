"""Get this agent version into a board process and attach our session, in as few round trips as possible.

The agent is the package ``rpyc_ikernel/agent``. All its sources travel in one call, with one
version hash over all of them: ``boot.py`` as text, the other modules zlib-compressed in one blob
(boot.py serves them from memory on the board; see its docstring). On a new connection:

1. ``HANDLE_GETROOT``: the board's SlaveService, as a netref built without rpyc's usual
   ``HANDLE_INSPECT`` round trip (BoardConnection); on a token board it is sent right behind the
   token proof (``request_root``), so it costs no round trip of its own;
2. one ``eval`` on the root (``HANDLE_CALLATTR``): if the process has this agent version, the answer is
   everything the kernel needs at once (the agent package, board_info, the session's methods: bound
   methods and modules cross as netrefs that need no further round trip);
3. only otherwise, one call of the loader function step 2 returned, with all the sources as plain
   arguments (rpyc sends str/bytes/tuples by value); its answer is the same as step 2's.

So a connection costs 2 rpyc round trips when the board has the agent, 3 when it must be sent, on
top of the TCP/TLS/token handshake. rpyc's classic client would first ask the board for its
modules, eval, execute and namespace (about 8 round trips); BoardConnection provides those lazily.
"""

from __future__ import annotations

import ast
import hashlib
import json
import threading
import zlib
from dataclasses import dataclass
from functools import cache, cached_property
from pathlib import Path

from rpyc.core import consts, netref
from rpyc.core.protocol import Connection
from rpyc.core.service import ModuleNamespace

from .agent import wire
from .compat import broken

AGENT_DIR = Path(__file__).with_name("agent")
BOOT_PATH = "boot.py"
BOOT_FILE = "<rpyc_ikernel agent>/" + BOOT_PATH  # the agent's files on the board are named <...>/path


def agent_sources(directory: Path = AGENT_DIR) -> dict[str, str]:
    """Every module of the agent package: {path in the package ("magics/osm.py"): source}."""
    return {
        path.relative_to(directory).as_posix(): path.read_text(encoding="utf-8")
        for path in sorted(directory.rglob("*.py"))
    }


def version_of(sources: dict[str, str]) -> str:
    """One hash over all sources: a board process has this agent exactly when it has this version."""
    digest = hashlib.sha256()
    for path, source in sorted(sources.items()):
        digest.update(path.encode("utf-8") + b"\0" + source.encode("utf-8") + b"\0")
    return digest.hexdigest()[:16]


def statement_lines(source: str) -> tuple[int, ...]:
    """The first line of each top-level statement (decorators included): boot.py compiles them one by one."""
    return tuple(
        min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", ())])
        for node in ast.parse(source).body
    )


def bundle(sources: dict[str, str]) -> tuple[bytes, tuple]:
    """(blob, index): each module but boot.py compressed, end to end;
    index = ((path, start, end, statement lines), ...)."""
    blob = bytearray()
    index = []
    for path, source in sorted(sources.items()):
        if path == BOOT_PATH:
            continue
        packed = zlib.compress(source.encode("utf-8"), 9)
        index.append((path, len(blob), len(blob) + len(packed), statement_lines(source)))
        blob += packed
    return bytes(blob), tuple(index)


SOURCES = agent_sources()
VERSION = version_of(SOURCES)


_shipment_lock = threading.Lock()


@cache
def _shipment() -> tuple[str, bytes, tuple]:
    """What the loader gets: boot.py's source, the blob, the index (made on first need)."""
    with _shipment_lock:  # one thread makes it; another asking meanwhile waits for that one
        return _made_shipment()


@cache
def _made_shipment() -> tuple[str, bytes, tuple]:
    return (SOURCES[BOOT_PATH], *bundle(SOURCES))


def prepare_shipment() -> None:
    """Make the loader's bundle in the background (~50 ms of CPU: a parse and zlib -9 of every
    module) while a connect over a slow link waits for the probe's answer, not after it."""
    if not _made_shipment.cache_info().currsize:
        threading.Thread(target=_shipment, name="agent bundle", daemon=True).start()


def probe_expression(session_id: str | None) -> str:
    """Python for the board's eval: connect()'s answer if the process has this agent version, else a
    loader function taking (boot source, blob, index) that installs it and then answers the same."""
    package, boot_module = wire.PACKAGE, wire.PACKAGE + ".boot"
    install = (
        f"lambda source, blob, index: (lambda boot: (boot.__dict__.update(__file__={BOOT_FILE!r}),"
        f" exec(compile(source, {BOOT_FILE!r}, 'exec', dont_inherit=True), boot.__dict__),"
        f" boot.install(boot, {package!r}, {VERSION!r}, blob, index).connect({session_id!r}))[2])"
        f"(type(sys)({boot_module!r}))"
    )
    return (
        f"(lambda sys: sys.modules[{package!r}].connect({session_id!r})"
        f" if getattr(sys.modules.get({package!r}), 'VERSION', None) == {VERSION!r}"
        f" else ({install}))(__import__('sys'))"
    )


class BoardConnection(Connection):
    """rpyc's Connection for the kernel's end: the same protocol, fewer round trips.

    rpyc asks the peer for the methods of a class it has no netref class for (``HANDLE_INSPECT``, one
    round trip) before it can hand out a netref to one of its objects. The board's root service and
    the agent package are only ever used by attribute name, so their netrefs need none. What rpyc's
    classic client (MasterService) fetches on connect is fetched on first use instead: ``eval``,
    ``execute``, ``namespace``, ``modules``, ``builtins``.
    """

    _fetching_root = False
    _root_request = None  # the GETROOT request on its way (request_root)
    agent_loader = None  # see attach()

    # rpyc's private attributes (_channel, _config) are touched in this class only: the rest of
    # the kernel tunes and closes its connections through these.
    @property
    def stream(self):
        """The stream under rpyc's channel (link.BoardStream for every connection the kernel opens)."""
        return self._channel.stream

    def set_compression(self, compress: bool) -> None:
        """Whether this end compresses the large messages it sends (rpyc's default: yes)."""
        self._channel.compress = compress

    def set_call_timeout(self, seconds: float) -> None:
        """How long rpyc's own synchronous requests (attribute look-ups on netrefs) may wait."""
        self._config["sync_request_timeout"] = seconds

    def close_channel(self) -> None:
        """Close the socket at once, without rpyc's goodbye (which a dead link never answers)."""
        self._channel.close()

    def request_root(self) -> None:
        """Send GETROOT now without waiting for the answer (root takes it)."""
        if self._remote_root is None and self._root_request is None:
            self._fetching_root = True
            self._root_request = self.async_request(consts.HANDLE_GETROOT)

    @property
    def root(self):
        if self._remote_root is None:
            self.request_root()
            try:
                self._root_request.set_expiry(self._config["sync_request_timeout"])
                self._remote_root = self._root_request.value
            finally:
                self._fetching_root = False
                self._root_request = None
        return self._remote_root

    def _dispatch(self, data) -> None:
        """rpyc's dispatch; a message it cannot take (a bad type, brine nested too deep, a broken
        box) closes the link and fails like a dropped one (EOFError).

        rpyc would raise ValueError or RecursionError to whoever waits, still holding its receive
        lock on a failed reply, so every later wait on the link hung (a cell with no reply at all).
        """
        try:
            super()._dispatch(data)
        except (EOFError, OSError):
            raise
        except Exception as exc:
            lock = getattr(self, "_recvlock", None)
            owned = getattr(lock, "_is_owned", None)
            if owned is not None and owned():
                lock.release()
            message = f"the board sent a malformed message ({type(exc).__name__}); closed the link"
            raise broken(self._channel.stream, message) from None

    def _netref_factory(self, id_pack):
        if self._fetching_root or id_pack[0] == wire.PACKAGE:
            return netref.class_factory(id_pack, ())(self, id_pack)
        return super()._netref_factory(id_pack)

    @cached_property
    def eval(self):
        return self.root.eval

    @cached_property
    def execute(self):
        return self.root.execute

    @cached_property
    def namespace(self):
        return self.root.namespace

    @cached_property
    def modules(self) -> ModuleNamespace:
        return ModuleNamespace(self.root.getmodule)

    @cached_property
    def builtins(self):
        return self.modules.builtins


@dataclass
class Attached:
    """The agent reached through one connection: its package, the board's facts, our session's methods."""

    agent: object  # netref of the agent package: agent.board_status, agent.open_upload, ...
    info: dict
    methods: dict  # wire.SESSION_METHODS -> netrefs; empty when no session was asked for


def attach(conn: BoardConnection, session_id: str | None, timeout: float) -> Attached:
    """Load this agent version into the board process if needed and attach session_id (if given).

    Raises rpyc's errors (AsyncResultTimeout, EOFError, a remote exception): the caller knows the link.
    """
    root = conn.root  # within rpyc's sync_request_timeout, which the caller set
    answer = _request(
        conn, timeout, consts.HANDLE_CALLATTR, root, "eval", (probe_expression(session_id),), ()
    )
    if not isinstance(answer, tuple):  # the loader: this board process does not have this version
        conn.agent_loader = answer  # dropping a netref sends the board a message: not during connect
        answer = _request(conn, timeout, consts.HANDLE_CALL, answer, _shipment(), ())
    agent, info, methods = answer
    return Attached(agent=agent, info=json.loads(info), methods=dict(zip(wire.SESSION_METHODS, methods)))


def _request(conn: Connection, timeout: float, handler: int, *args):
    result = conn.async_request(handler, *args)
    result.set_expiry(timeout)
    return result.value
