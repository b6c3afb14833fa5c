"""Finding boards on the network: browse DNS-SD over mDNS (python-zeroconf) for board servers.

A board server listening beyond loopback announces `_rpyc-ikernel._tcp` (server.py's Announcer)
with TXT records saying its version, auth (token|open), TLS, Python, machine and host name. This
module only finds boards; connecting stays board.py's job, several boards at once fleet.py's.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
from dataclasses import dataclass, field

SERVICE_TYPE = "_rpyc-ikernel._tcp.local."
DEFAULT_WAIT = 2.0  # seconds of browsing: boards answer within ~0.1 s on a LAN; Wi-Fi is slower
MIN_WAIT, QUIET = 1.0, 1.0  # seconds: see _browse
TXT_KEYS = ("version", "auth", "tls", "python", "machine", "hostname")
COLUMNS = ("name", "address", "port", "auth", "TLS", "Python", "machine")


class DiscoveryError(LookupError):
    """No board of that name answered, or browsing could not start (one line for the user)."""


@dataclass(frozen=True)
class FoundBoard:
    """One board as it announces itself."""

    name: str
    address: str
    port: int
    auth: str = "?"
    tls: str = "?"
    python: str = "?"
    machine: str = "?"
    version: str = "?"
    hostname: str = "?"
    addresses: tuple = ()

    def row(self) -> tuple:
        return (self.name, self.address, str(self.port), self.auth, self.tls, self.python, self.machine)


@dataclass
class Discovery:
    """What one browse found: the boards (by name), and one line per problem seen on the way."""

    boards: list = field(default_factory=list)
    problems: list = field(default_factory=list)

    def find(self, name: str) -> FoundBoard | None:
        """The board announcing `name` (None if none); DiscoveryError if hosts at several addresses do."""
        wanted = _bare_name(name)
        matches = [board for board in self.boards if board.name.lower() == wanted]
        places = sorted({f"{board.address}:{board.port}" for board in matches})
        if len(places) > 1:
            raise DiscoveryError(
                f"more than one host announces the name {wanted!r} (at {' and '.join(places)});"
                " give the board's address, or pair with its pairing string"
            )
        return matches[0] if matches else None


def _bare_name(name: str) -> str:
    name = name.strip().rstrip(".").lower()
    return name[: -len(".local")] if name.endswith(".local") else name


def _text(value: object) -> str | None:
    if not isinstance(value, bytes):
        return None
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return text if text.isprintable() and len(text) <= 64 else None


def _clean_name(name: str) -> str | None:
    """An announced board name fit to print and to put in kernel.json: printable, 1 to 63 characters
    (a DNS label); None otherwise (escape codes or newlines from a LAN host must not reach a terminal)."""
    return name if isinstance(name, str) and name.isprintable() and 0 < len(name) <= 63 else None


def _board(info, name: str) -> tuple:
    """A FoundBoard from a resolved ServiceInfo, and a problem line (or None) about its TXT."""
    addresses = tuple(info.parsed_addresses())
    properties = info.properties or {}
    values, unreadable = {}, []
    for key in TXT_KEYS:
        text = _text(properties.get(key.encode()))
        if text is None:
            unreadable.append(key)
        values[key] = text or "?"
    address = addresses[0] if addresses else "?"
    board = FoundBoard(name=name, address=address, port=info.port or 0, addresses=addresses, **values)
    problem = None
    if unreadable:
        problem = (
            f"board {name!r} at {address}:{board.port} announces unreadable details"
            f" ({', '.join(unreadable)} shown as ?); connect by address to check what serves there"
        )
    return board, problem


def discover(wait: float = DEFAULT_WAIT, interfaces: object = None) -> Discovery:
    """Browse for `wait` seconds and return every board that answered, sorted by name.

    interfaces: python-zeroconf's InterfaceChoice or a list of addresses (default: all).
    """
    if _in_event_loop():  # a kernel's handler: zeroconf would use that loop, which sleeping here stops
        outcome: list = []
        worker = threading.Thread(target=lambda: outcome.append(_outcome(discover, wait, interfaces)))
        worker.start()
        worker.join()
        value, error = outcome[0]
        if error is not None:
            raise error
        return value
    from zeroconf import IPVersion, ServiceBrowser, ServiceInfo, ServiceStateChange, Zeroconf

    try:
        zc = Zeroconf(ip_version=IPVersion.V4Only, **({"interfaces": interfaces} if interfaces else {}))
    except OSError as exc:
        raise DiscoveryError(f"cannot browse the network for boards (mDNS): {exc}") from None
    names: dict[str, None] = {}
    lock = threading.Lock()

    def changed(zeroconf, service_type, name, state_change) -> None:
        if state_change is not ServiceStateChange.Removed:
            with lock:
                names[name] = None

    found = Discovery()
    try:
        browser = ServiceBrowser(zc, SERVICE_TYPE, handlers=[changed])
        _browse(names, lock, wait)
        browser.cancel()
        with lock:
            pending = list(names)
        for full in pending:
            name = _clean_name(_instance(full))
            if name is None:
                found.problems.append(
                    "a board announced a name that is not printable text of at most 63 characters;"
                    " left out (connect to it by address)"
                )
                continue
            info = ServiceInfo(SERVICE_TYPE, full)
            # the board sends SRV, TXT and A with its answer: the cache has them (else ask, briefly)
            if not info.load_from_cache(zc) and not info.request(zc, 1000):
                found.problems.append(f"board {name!r} did not say where it listens; try again")
                continue
            board, problem = _board(info, name)
            found.boards.append(board)
            if problem:
                found.problems.append(problem)
    finally:
        zc.close()
    found.boards.sort(key=lambda board: (board.name.lower(), board.address, board.port))
    return found


def _in_event_loop() -> bool:
    import asyncio

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _outcome(function, *args) -> tuple:
    try:
        return function(*args), None
    except Exception as exc:  # handed to the caller's thread
        return None, exc


def _browse(names: dict, lock: threading.Lock, wait: float) -> None:
    """Wait up to `wait` s, but not longer than QUIET s after the last new board once MIN_WAIT s passed:
    boards on one LAN answer within ~0.2 s, so a listing need not always take the whole wait."""
    started = last_new = time.monotonic()
    seen = 0
    while True:
        now = time.monotonic()
        with lock:
            if len(names) != seen:
                seen, last_new = len(names), now
        if now - started >= wait or (seen and now - started >= MIN_WAIT and now - last_new >= QUIET):
            return
        time.sleep(0.05)


def _instance(full: str) -> str:
    return full[: -len(SERVICE_TYPE) - 1] if full.endswith("." + SERVICE_TYPE) else full


def table(found: Discovery) -> str:
    """The boards as an aligned table, then one line per problem (what `install --discover` prints)."""
    if not found.boards:
        lines = [
            "No boards found on the network. A board announces itself when its server listens there"
            " (python3 -m rpyc_ikernel.server --host 0.0.0.0) without --no-announce."
        ]
    else:
        rows = [COLUMNS] + [board.row() for board in found.boards]
        widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
        lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]
    return "\n".join(lines + [f"note: {problem}" for problem in found.problems])


def is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def wants_discovery(host: str) -> bool:
    """Whether connect_remote(host) should look for an announced board of that name.

    name.local: always (that is mDNS's domain). A one-word name: only when ordinary DNS does not
    know it. Addresses and dotted names never (they go to the resolver as given).
    """
    host = host.strip().rstrip(".")
    if not host or is_address(host):
        return False
    if host.lower().endswith(".local"):
        return True
    if "." in host or host.lower() == "localhost":
        return False
    try:
        socket.getaddrinfo(host, None)
    except (OSError, UnicodeError):
        return True
    return False


def resolve(name: str, wait: float = DEFAULT_WAIT) -> FoundBoard:
    """The board that announces `name` (or `name.local`); DiscoveryError in one line when none does."""
    found = discover(wait)
    board = found.find(name)
    if board is None:
        known = ", ".join(repr(b.name) for b in found.boards[:8]) or "none"
        raise DiscoveryError(
            f"no board named {_bare_name(name)!r} answered on the network within {wait:g} s"
            f" (boards found: {known}); check the name, or give the board's address"
        )
    return board
