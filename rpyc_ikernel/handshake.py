"""Handshake 2, the kernel's side: reach the board, and learn what it is without guessing.

The kernel speaks first (see server.py for the byte layout). Right after TCP connect (and TLS) it
sends one rpyc channel frame, a valid PING request carrying "rpyc_ikernel hello 2 <nonce>", and reads
frames until the answer to it arrives:

- our board server with a token answers with a challenge: the two HMAC proofs follow (2 round trips);
- a plain rpyc classic server (or ours with --no-auth) echoes the PING: an open server, 1 round trip;
- an rpyc server of the other wire (rpyc 5.x vs 6.x) answers with a frame of its own wire and hangs
  up: the kernel dials again in that wire (2 more round trips, once: the wire is remembered per board);
- anything else (HTTP, garbage, silence, a stopped board) ends with a one-line error.

Every read is bounded by one deadline for the whole connect, which scales with the round trip time
the TCP connect measured. The token file of this machine is offered only to loopback boards.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
import socket
import ssl
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from . import settings
from .errors import BoardAuthError, BoardError, BoardUnreachable, describe_socket_error
from .link import tune_socket
from .server import (
    ACCEPTED,
    BIND_TO,
    BUSY,
    CHALLENGE,
    DENIED,
    HANDSHAKE_SEQ,
    HANDSHAKE_VERSION,
    HELLO,
    MSG_REPLY,
    MSG_REQUEST,
    PROOF,
    RELAYED,
    HandshakeTimeout,
    NotAFrame,
    decode_message,
    default_token_path,
    endpoint_text,
    exposure,
    local_wire,
    ping_request,
    ping_text,
    port_claim_path,
    proof,
    proof_binding,
    read_frame,
    tls_binding,
)

BOARD_TOKEN_FILE = "~/.config/rpyc_ikernel/token"  # the board server's default, as its user sees it
RTT_FACTOR = 40  # round trips a connect may take before it is called dead (a connect needs ~30)
MAX_EARLY_BYTES = 64 * 1024  # requests a full-duplex board may send before it answers our hello
_OLD_HANDSHAKE = b"RPYC_"  # what a board server of handshake 1 (rpyc_ikernel <= 0.1) sends first

PAIRING_MARK = "@sha256:"  # TOKEN@sha256:FINGERPRINT, the pairing string a board server prints
_NAME_MISMATCH = (62, 64)  # X509_V_ERR_HOSTNAME_MISMATCH, X509_V_ERR_IP_ADDRESS_MISMATCH

_WARNED_TOKEN_FILES: set = set()
_wires: dict = {}  # "host:port" -> the rpyc wire the board there spoke last time


def read_token_file(path: str) -> str | None:
    """The token in a kernel's local token file; warns once (stderr, so in the cell) if others can read it."""
    try:
        with open(path, encoding="utf-8") as handle:
            token = handle.read().strip() or None
            stats = os.fstat(handle.fileno())
    except (OSError, UnicodeError):
        return None
    exposed = exposure(stats) if token else None
    if exposed and path not in _WARNED_TOKEN_FILES:
        _WARNED_TOKEN_FILES.add(path)
        print(
            f"rpyc_ikernel: warning: the token file {path} is {exposed}: whoever reads it can run code on"
            f" boards that use this token; run chmod 600 {path}",
            file=sys.stderr,
            flush=True,
        )
    return token


@dataclass(frozen=True)
class Credentials:
    """How to prove who we are to a board and how to check who it is (token, TLS)."""

    token: str | None = None  # given by the user; else the local token file is tried (loopback boards)
    tls: bool = False
    ca: str | None = None  # CA bundle that signed the board's certificate (default: system CAs)
    certfile: str | None = None  # a client certificate, for boards started with --ca
    keyfile: str | None = None
    allow_open: bool = False  # with a token: still accept a board that checks none
    # "HOST:PORT" the board server sees this connection arrive on, when a forward the kernel does not
    # make itself (ssh -L, NAT) sits between: the token proof is bound to it (see server.py)
    forward: str | None = None
    # SHA-256 of the board certificate, hex: the kernel pins it (no CA, no host name), from a pairing
    # string TOKEN@sha256:FINGERPRINT given as the token (the board server prints it)
    pin: str | None = None

    def __post_init__(self) -> None:
        if self.token and PAIRING_MARK in self.token:
            token, _, pin = self.token.rpartition(PAIRING_MARK)
            object.__setattr__(self, "token", token.strip() or None)
            object.__setattr__(self, "pin", pin.strip().replace(":", "").lower())
        if self.pin:
            object.__setattr__(self, "tls", True)

    @classmethod
    def from_environment(cls, environ: dict | None = None) -> Credentials:
        """RPYC_IKERNEL_TOKEN, _TLS, _CA, _CERTFILE/_KEYFILE and _ALLOW_OPEN."""
        return cls(
            token=settings.TOKEN.read(environ),
            tls=settings.TLS.read(environ) or bool(settings.CA.read(environ)),
            ca=settings.CA.read(environ),
            certfile=settings.CERTFILE.read(environ),
            keyfile=settings.KEYFILE.read(environ),
            allow_open=settings.ALLOW_OPEN.read(environ),
            forward=settings.FORWARD.read(environ),
        )

    def overridden(self, **changes) -> Credentials:
        """These credentials with the given non-None values replaced (connect_remote's keywords)."""
        changes = {key: value for key, value in changes.items() if value is not None}
        if changes.get("ca") or changes.get("certfile"):
            changes.setdefault("tls", True)
        return replace(self, **changes)

    def tls_context(self) -> ssl.SSLContext:
        if self.pin:  # the pin says which certificate: no CA, no host name to check
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            context.minimum_version = ssl.TLSVersion.TLSv1_2
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            if self.certfile:
                context.load_cert_chain(self.certfile, self.keyfile)
            return context
        context = ssl.create_default_context(cafile=self.ca)
        if self.certfile:
            context.load_cert_chain(self.certfile, self.keyfile)
        return context


@dataclass(frozen=True)
class BoardToken:
    """The board's own token as a tunnel read it: the token (None if it could not), where it came from
    (for a refusal's message), and a line for the cell (said once per board)."""

    token: str | None
    source: str = ""
    notice: str | None = None


@dataclass
class Handshake:
    """A socket ready for rpyc, and what the handshake learnt."""

    sock: socket.socket
    wire: int  # the board's rpyc wire (5 or 6): compat.connect speaks it
    security: str  # for status(): "token (challenge-response)" or "no authentication ...", + ", TLS ..."
    deadline: float  # the connect's deadline (time.monotonic()), stretched by the measured round trip
    early: bytes = b""  # frames the board sent before its answer; rpyc must still read them
    notices: list = field(default_factory=list)
    rtt: float = 0.0  # the round trip measured while connecting (TCP connect, hello)


def _sha256_hex(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


def connect_budget(timeout: float, rtt: float) -> float:
    """Seconds a whole connect may take: the connect timeout, or RTT_FACTOR round trips on a slow link."""
    return max(timeout, RTT_FACTOR * rtt)


def is_loopback(ip: str) -> bool:
    """Whether a peer address is this machine (127.0.0.0/8, ::1, or IPv4-mapped 127.x)."""
    try:
        address = ipaddress.ip_address(ip.split("%", 1)[0])
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return address.is_loopback or bool(mapped and mapped.is_loopback)


def parse_forward(text: str) -> tuple[str, int]:
    """("HOST", PORT) of a forward= value "HOST:PORT" ("[::1]:18812" for IPv6); ValueError says why not."""
    host, _, port = str(text).strip().rpartition(":")
    host = host.strip("[]")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(
            f"forward={text!r} is not HOST:PORT: give the address and port the board server sees the"
            " forwarded connection arrive on, e.g. forward='127.0.0.1:18812' for ssh -L N:localhost:18812"
        )
    return host, int(port)


class BoardBusy(BoardUnreachable):
    """The board answered "busy": too many connections in its handshake (a flood?) to take ours now."""


BUSY_RETRY = (0.05, 0.5)  # first and longest wait before dialling a busy board again


class _OtherWire(Exception):
    """The board answered in the other rpyc wire (or hung up on ours): dial again in `wire`."""

    def __init__(self, wire: int) -> None:
        self.wire = wire


class BoardHandshake:
    """One board's handshakes: dial, TLS, hello; raises BoardError subclasses with one-line messages.

    `host` and `shown` are the board's host (its TLS certificate names it) and the address users know
    (an adb board is dialled through a local forward); `not_rpyc` builds the error for a peer that is
    not an rpyc server (the Board words it, adb too).
    """

    def __init__(
        self,
        host: str,
        shown: str,
        credentials: Credentials,
        not_rpyc: Callable[[BaseException], BoardError],
        hint: str,
        after_proof: Callable[[socket.socket, int], None] | None = None,
        board_token: Callable[[], BoardToken] | None = None,
        far_end: tuple[str, int] | None = None,
    ) -> None:
        self.host = host
        self.shown = shown
        self.credentials = credentials
        self.not_rpyc = not_rpyc
        self.hint = hint
        # called with (socket, board wire) right after the token proof is sent: the kernel's first rpyc
        # request can travel with it instead of one round trip later (the board serves rpyc on this
        # socket right after its verdict, and its handshake reads exactly its frames, no more)
        self.after_proof = after_proof
        # reads the board's own token file through the tunnel (adb), for a board that asks for a token
        # when none was given; tried before this machine's token file
        self.board_token = board_token
        # (host, port) the board server sees when the kernel dials through a forward it made itself (adb)
        self.far_end = far_end
        self._budget = 0.0  # seconds the current connect may take, for messages

    def open(self, host: str, port: int, timeout: float, limit: float | None = None) -> Handshake:
        """Dial host:port and run the handshake, all before `limit` and within the scaled budget.

        The budget starts as `timeout` and grows to RTT_FACTOR round trips once one is measured: the
        TCP connect, then the hello's answer (through an ssh or adb tunnel only the latter is the
        board's real round trip).
        """
        started = time.monotonic()
        wire = _wires.get(self.shown, local_wire())

        def deadline_for(rtt: float) -> float:
            deadline = started + connect_budget(timeout, rtt)
            deadline = deadline if limit is None else min(deadline, limit)
            self._budget = deadline - started
            return deadline

        deadline_for(0.0)
        pause = BUSY_RETRY[0]
        while True:
            try:
                return self._open_once(host, port, wire, deadline_for)
            except BoardBusy:
                if time.monotonic() + pause >= deadline_for(0.0):
                    raise
                time.sleep(pause)  # a flood holds its handshake slots only briefly: dial again
                pause = min(pause * 2, BUSY_RETRY[1])

    def _open_once(self, host: str, port: int, wire: int, deadline_for: Callable) -> Handshake:
        """One dial (and one redial in the other rpyc wire if the board needs it) and the handshake."""
        deadline = deadline_for(0.0)
        sock, rtt = self._dial(host, port, max(0.1, deadline - time.monotonic()))
        deadline = deadline_for(rtt)
        for attempt in (1, 2):
            try:
                hello, answer, early, hello_rtt = self._hello(sock, wire, deadline)
                rtt = max(rtt, hello_rtt)
                deadline = deadline_for(rtt)
                if answer == hello:
                    result = self._open_board(sock, wire, deadline, early)
                elif answer.startswith(CHALLENGE + b" "):
                    result = self._prove(sock, wire, hello, answer, deadline)
                else:
                    raise self.not_rpyc(ValueError(f"it answered {answer[:40]!r}"))
            except _OtherWire as other:
                sock.close()
                if attempt == 2:
                    tls = "" if self.credentials.tls else "; a board server started with TLS needs tls=True"
                    hung_up = EOFError(f"it hung up on our hello in both rpyc wires{tls}")
                    raise self.not_rpyc(hung_up) from None
                wire = other.wire
                sock, _ = self._dial(host, port, max(0.1, deadline - time.monotonic()))
                continue
            except BaseException:
                sock.close()
                raise
            _wires[self.shown] = result.wire
            result.rtt = rtt
            return result
        raise AssertionError("unreachable")

    # ------------------------------------------------------------ steps
    def _dial(self, host: str, port: int, timeout: float) -> tuple[socket.socket, float]:
        """TCP connect (and TLS): the socket and the TCP connect time, a measure of the round trip."""
        started = time.monotonic()
        try:
            sock = socket.create_connection((host, port), timeout=timeout)
        except OSError as exc:
            error = BoardUnreachable(
                f"cannot reach board {self.shown}: {describe_socket_error(exc)}; {self.hint}"
            )
            error.refused = isinstance(exc, ConnectionRefusedError)  # nothing listens: no server there now
            raise error from None
        rtt = time.monotonic() - started
        tune_socket(sock)
        if self.credentials.tls:
            sock.settimeout(max(0.1, timeout - rtt))  # CPython bounds the whole TLS handshake by it
            sock = self._wrap_tls(sock)
        return sock, rtt

    def _wrap_tls(self, sock: socket.socket) -> socket.socket:
        peer = sock.getpeername()[:2]
        try:
            if self.credentials.pin and len(self.credentials.pin) != 64:
                raise BoardAuthError(
                    f"the pairing string for board {self.shown} ends in a fingerprint of"
                    f" {len(self.credentials.pin)} characters, not 64: copy the whole TOKEN@sha256:..."
                    " line the board server printed"
                )
            wrapped = self.credentials.tls_context().wrap_socket(sock, server_hostname=self.host)
        except ssl.SSLCertVerificationError as exc:
            sock.close()
            if exc.verify_code in _NAME_MISMATCH:
                names = self._certificate_names(peer)
                raise BoardAuthError(
                    f"TLS: board {self.shown} showed a certificate for {names or 'other names'}, not for"
                    f" {self.host!r}: connect by one of those names, or give the board a certificate for"
                    f" {self.host!r}"
                ) from None
            raise BoardAuthError(
                f"TLS: board {self.shown} showed a certificate we do not trust ({exc.verify_message});"
                " pass ca= the CA file that signed it, or pair with the string its server printed"
                " (token=TOKEN@sha256:FINGERPRINT)"
            ) from None
        except (ssl.SSLError, OSError) as exc:
            sock.close()
            raise BoardUnreachable(
                f"TLS handshake with board {self.shown} failed ({describe_socket_error(exc)});"
                " is the board server started with TLS (its start line says so)?"
            ) from None
        except BaseException:
            sock.close()
            raise
        if self.credentials.pin:
            seen = _sha256_hex(wrapped.getpeercert(binary_form=True) or b"")
            if not secrets.compare_digest(seen, self.credentials.pin):
                wrapped.close()
                raise BoardAuthError(
                    f"TLS: board {self.shown} showed a certificate with fingerprint sha256:{seen},"
                    f" not the paired sha256:{self.credentials.pin}: another machine answers there,"
                    " or the board made a new certificate (pair again with the string its server prints)"
                )
        return wrapped

    def _certificate_names(self, peer: tuple) -> str:
        """The names in the board's certificate, read on a second connection that checks the CA but not
        the name (for the error message only)."""
        context = self.credentials.tls_context()
        context.check_hostname = False
        try:
            with socket.create_connection(peer, timeout=2) as raw:
                with context.wrap_socket(raw) as sock:
                    cert = sock.getpeercert() or {}
        except (OSError, ValueError):
            return ""
        names = [value for kind, value in cert.get("subjectAltName", ()) if kind in ("DNS", "IP Address")]
        if not names:
            names = [value for rdn in cert.get("subject", ()) for key, value in rdn if key == "commonName"]
        return ", ".join(repr(name) for name in names)

    def _hello(self, sock: socket.socket, wire: int, deadline: float) -> tuple[bytes, bytes, bytes, float]:
        """Send the hello in `wire` and read until its answer: (hello, answer, early frames, round trip).

        Frames the board sends before its answer (a full-duplex ClassicService asks for our root
        first) are kept for rpyc; a frame in the other wire, or a hang-up, raises _OtherWire.
        """
        hello = b"%s %s %s" % (HELLO, HANDSHAKE_VERSION, secrets.token_hex(16).encode("ascii"))
        early = b""
        try:
            sent = time.monotonic()
            sock.sendall(ping_request(wire, hello))
            while True:
                raw, payload = read_frame(sock, deadline)
                board_wire, msg, seq, args = decode_message(payload)
                said = ping_text(args, reply=True) if (msg, seq) == (MSG_REPLY, HANDSHAKE_SEQ) else None
                if said is not None and said.startswith(BUSY):  # in the board's wire, whichever we spoke
                    why = said[len(BUSY) :].strip().decode("ascii", "replace") or "too many connections"
                    raise BoardBusy(
                        f"board {self.shown} is busy and took no new connection ({why}): a flood of"
                        " connections, or many kernels at once; run the cell again in a moment"
                    )
                if board_wire != wire:
                    raise _OtherWire(board_wire)
                if msg == MSG_REQUEST and len(early) + len(raw) <= MAX_EARLY_BYTES:
                    early += raw
                    continue
                answer = ping_text(args, reply=True) if (msg, seq) == (MSG_REPLY, HANDSHAKE_SEQ) else None
                if answer is None:
                    raise ValueError("it answered our hello with something else")
                return hello, answer, early, time.monotonic() - sent
        except (EOFError, ConnectionResetError, BrokenPipeError):
            if early:  # it spoke our wire, then hung up
                raise self.not_rpyc(EOFError("it closed the connection")) from None
            raise _OtherWire(5 if wire == 6 else 6) from None
        except HandshakeTimeout:
            raise self.not_rpyc(
                TimeoutError(
                    f"no answer to our hello within {self._budget:.1f} s: a stopped board, or a link slower"
                    " than that (connect_remote(..., timeout=SECONDS) allows more)"
                )
            ) from None
        except NotAFrame as exc:
            raise self._not_a_frame(sock, exc.data) from None
        except ValueError as exc:
            raise self.not_rpyc(exc) from None
        except OSError as exc:
            raise self.not_rpyc(exc) from None

    def _not_a_frame(self, sock: socket.socket, data: bytes) -> BoardError:
        if data.startswith(_OLD_HANDSHAKE):
            return BoardUnreachable(
                f"board {self.shown} runs an older rpyc_ikernel server (handshake 1): copy this version's"
                " server.py to the board (or pip install -U rpyc_ikernel there) and restart it"
            )
        try:  # a little more of what it said, for the message
            sock.settimeout(0.05)
            data += sock.recv(64)
        except OSError:
            pass
        said = data[:40].decode("ascii", "replace").splitlines()[0] if data else ""
        return self.not_rpyc(ValueError(f"it said {said!r}"))

    def _token(self, sock: socket.socket, notices: list) -> tuple[str | None, str]:
        """The token to prove and where it came from: given, else the board's own (read through the
        tunnel), else the local file for a loopback board."""
        if self.credentials.token:
            return self.credentials.token, "given"
        missing = ""
        if self.board_token is not None:
            found = self.board_token()
            if found.notice:
                notices.append(found.notice)
            if found.token:
                return found.token, found.source
            missing = found.source  # why it could not be read
        try:
            peer = sock.getpeername()[0]
        except OSError:
            peer = ""
        if is_loopback(peer):
            path = default_token_path()
            token = read_token_file(path)
            return token, (f"from this machine's token file {path}" if token else missing)
        return None, missing or "this machine's token file is offered only to loopback boards"

    def _endpoint(self, sock: socket.socket) -> bytes:
        """The endpoint the board server should see this connection arrive on (see server.py)."""
        if self.far_end is not None:
            return endpoint_text(*self.far_end)
        if self.credentials.forward:
            return endpoint_text(*parse_forward(self.credentials.forward))
        host, port = sock.getpeername()[:2]
        return endpoint_text(host, port)

    def _claimed_port(self, sock: socket.socket) -> str | None:
        """The claim file of a token-checking server of ours on the loopback port dialled, if any."""
        if self.far_end is not None or self.credentials.forward:
            return None
        try:
            host, port = sock.getpeername()[:2]
        except OSError:
            return None
        path = port_claim_path(port)
        return path if is_loopback(host) and os.path.exists(path) else None

    def _open_board(self, sock: socket.socket, wire: int, deadline: float, early: bytes) -> Handshake:
        notices = []
        claim = None if self.credentials.allow_open else self._claimed_port(sock)
        if claim:
            raise BoardAuthError(
                f"board {self.shown} checks no token, but a board server of ours that checks tokens serves"
                f" (or served) this port ({claim}): something else answers on it now, so this kernel sends"
                " it nothing; if you replaced that server by an open one, pass connect_remote(...,"
                f" allow_open=True) or delete {claim}"
            )
        if self.credentials.token:
            if not self.credentials.allow_open:
                raise BoardAuthError(
                    f"board {self.shown} does not check tokens (anyone who reaches it can run code) but this"
                    " kernel has one, so it refuses the board; to use it anyway pass"
                    " connect_remote(..., allow_open=True) or set RPYC_IKERNEL_ALLOW_OPEN=1"
                )
            notices.append(f"board {self.shown} does not check tokens: anyone who reaches it can run code")
        security = "no authentication (open rpyc server)" + self._tls_text()
        return Handshake(sock, wire, security, deadline, early, notices)

    def _prove(
        self, sock: socket.socket, wire: int, hello: bytes, challenge: bytes, deadline: float
    ) -> Handshake:
        fields = dict(word.split(b"=", 1) for word in challenge.split(b" ") if b"=" in word)
        board_wire = int(fields.get(b"wire", b"%d" % wire))
        notices: list = []
        token, source = self._token(sock, notices)
        if not token:
            raise BoardAuthError(self._token_missing(source))
        tls_part = tls_binding(sock.getpeercert(binary_form=True)) if self.credentials.tls else b""
        endpoint = self._endpoint(sock) if BIND_TO in challenge.split(b" ") else None
        binding = proof_binding(tls_part, endpoint)
        kernel_proof = proof(token, b"kernel", hello, challenge, binding).encode("ascii")
        message = PROOF + b" " + kernel_proof + (b"" if endpoint is None else b" to=" + endpoint)
        try:
            sock.sendall(ping_request(wire, message))
            if self.after_proof is not None:
                self.after_proof(sock, board_wire)
            _, payload = read_frame(sock, deadline)
            verdict = ping_text(decode_message(payload)[3], reply=True) or b""
        except (OSError, EOFError, ValueError) as exc:
            raise BoardAuthError(
                f"board {self.shown} closed the connection during the token check"
                f" ({describe_socket_error(exc)})"
            ) from None
        if verdict.startswith(BUSY):
            raise BoardBusy(
                f"board {self.shown} is busy: {verdict[len(BUSY) + 1 :].decode('ascii', 'replace')}"
            )
        if verdict.startswith(DENIED):
            reason = verdict[len(DENIED) + 1 :].decode("ascii", "replace")
            if verdict[len(DENIED) + 1 :].startswith(RELAYED):
                reason = reason[len(RELAYED) :].lstrip(": ")
                raise BoardAuthError(
                    f"board {self.shown} refused the connection as relayed ({reason}): something between"
                    " this kernel and the board forwards it; if that is your own port forward (ssh -L, NAT),"
                    " pass connect_remote(..., forward='ADDRESS:PORT') with the address the board names"
                    " (or set RPYC_IKERNEL_FORWARD), else something on this machine squats the port"
                )
            raise BoardAuthError(
                f"board {self.shown} refused the token {source} ({reason}); give the token the board"
                " server printed (token=... or RPYC_IKERNEL_TOKEN)"
            )
        expected = proof(token, b"board", hello, challenge, binding).encode("ascii")
        board_proof = verdict[len(ACCEPTED) + 1 :] if verdict.startswith(ACCEPTED + b" ") else b""
        if not secrets.compare_digest(board_proof, expected):
            raise BoardAuthError(
                f"board {self.shown} does not know our token (its proof is wrong); not sending code to it"
            )
        if not self.credentials.tls and self.far_end is None and not self._loopback_peer(sock):
            notices.append(
                f"the link to board {self.shown} is not encrypted (token only): pair with the line its server"
                " printed, token='TOKEN@sha256:FINGERPRINT', to encrypt it and pin the board's certificate"
            )
        security = "token (challenge-response)" + self._tls_text()
        return Handshake(sock, board_wire, security, deadline, notices=notices)

    @staticmethod
    def _loopback_peer(sock: socket.socket) -> bool:
        try:
            return is_loopback(sock.getpeername()[0])
        except OSError:
            return False

    def _token_missing(self, why: str) -> str:
        """One line: the board wants a token we do not have; where it is on the board, how to give it."""
        command = "connect_adb" if self.board_token is not None else "connect_remote"
        why = f" ({why})" if why else ""
        return (
            f"board {self.shown} requires a token{why}: the board server keeps it in {BOARD_TOKEN_FILE} of"
            f" the user running it (show it there with `cat {BOARD_TOKEN_FILE}`); give it as"
            f" {command}(..., token=...), RPYC_IKERNEL_TOKEN, or install the kernelspec with --token -"
        )

    def _tls_text(self) -> str:
        if self.credentials.pin:
            return f", TLS (certificate pinned, sha256:{self.credentials.pin[:16]}...)"
        return ", TLS (certificate verified)" if self.credentials.tls else ""
