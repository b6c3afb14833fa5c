"""The board server: rpyc's classic SlaveService, plus a main-thread cell runner.

Run it on the board with ``python3 -m rpyc_ikernel.server`` or, after copying this one file to the
board, ``python3 server.py``. It imports only the standard library and rpyc, so a board needs nothing
but ``pip install rpyc``.

Why the main thread: cells sent by the kernel run here, on the process's main thread, so an interrupt
is a real signal. That stops ``time.sleep``, blocking I/O and pure-Python loops alike, which an exception
injected into a worker thread cannot do. Connections are served by rpyc's threads meanwhile, so
completion, live images and interrupts keep working while a cell runs.
"""

from __future__ import annotations

import errno
import gc
import importlib
import logging
import os
import queue
import signal
import socket
import stat
import struct
import sys
import threading
import time
import types

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing, which costs a board memory
if TYPE_CHECKING:
    import argparse

    from rpyc.utils.server import ThreadedServer

DEFAULT_PORT = 18812
# rpyc imports these at start-up (bz2 and lzma come through argparse's shutil), most boards never use
# them, and together they cost a board ~5 MB: ssl ~4 MB (OpenSSL), the rest ~1 MB. See DeferredModule.
# Each maps to the C module it cannot work without: where that is missing, nothing is deferred, so
# importing the module fails as usual (and shutil, say, knows bz2 is not there).
DEFERRED_MODULES = {
    "ssl": "_ssl",
    "bz2": "_bz2",
    "lzma": "_lzma",
    "pickle": None,
    "random": "_random",
    "concurrent.futures": None,
}
EXECUTOR_MODULE = "_rpyc_ikernel_executor"  # the name the agent looks for
INTERRUPT_SIGNAL = getattr(signal, "SIGUSR1", None)
TERMINAL_INTERRUPT = "Ctrl-C in the board server's terminal"  # what the interrupted cell says

# ----------------------------------------------------------------------------- handshake 2
# The kernel speaks first, so nobody waits on a timer to guess what the peer is. Every message is one
# rpyc channel frame (!LB header: payload length, compressed=0; the payload; b"\n") whose payload is a
# valid rpyc HANDLE_PING request (kernel) or reply (board), in the kernel's wire (see "rpyc's message
# layout" below):
#   kernel -> board:  PING  "rpyc_ikernel hello 2 <kernel nonce>"
#   board  -> kernel: reply "rpyc_ikernel challenge 2 <board nonce> wire=<5|6> auth=token"
#   kernel -> board:  PING  "rpyc_ikernel proof <HMAC(token, 'kernel|hello|challenge|binding')>"
#   board  -> kernel: reply "rpyc_ikernel ok <HMAC(token, 'board|hello|challenge|binding')>"
#                     or    "rpyc_ikernel denied <why>"
# (hello and challenge stand for the whole texts above, nonces included)
# binding names what both ends see, so a proof relayed to another endpoint fails:
#   - with TLS, the board certificate (RFC 5929 tls-server-end-point, with SHA-256);
#   - always (when the challenge says "bind=to"), the endpoint the kernel dialled, which it sends in
#     the clear after its proof ("... proof <HMAC> to=<address>:<port>"): the address and port the board
#     server sees the connection arrive on (a forward the kernel makes itself, adb, or that the user
#     names, ssh -L or NAT, is counted at its far end). Loopback addresses count as one ("loopback").
#     A squatter on another port or address that relays the kernel's proof to the real server is
#     refused: the server is not where the kernel's proof says it dialled.
#   binding = tls_part + b"|to=" + endpoint   (tls_part is b"" without TLS)
# A board that cannot take a connection now (too many in the handshake) answers "rpyc_ikernel busy
# <why>" in place of a challenge and closes: the kernel says the board is busy and dials again.
# A plain rpyc server (or ours with --no-auth) simply echoes the hello: the kernel then knows it is an
# open server, and which wire it speaks, without a timer. A server of the other wire drops the frame.
# The kernel side imports these helpers from here: one definition of the protocol.

HANDSHAKE_VERSION = b"2"
HELLO = b"rpyc_ikernel hello"
CHALLENGE = b"rpyc_ikernel challenge"
PROOF = b"rpyc_ikernel proof"
ACCEPTED = b"rpyc_ikernel ok"
DENIED = b"rpyc_ikernel denied"
BUSY = b"rpyc_ikernel busy"
BIND_TO = b"bind=to"  # in the challenge: the proofs are bound to the endpoint the kernel dialled
RELAYED = b"relayed"  # the first word of a denial for a proof made for another endpoint
HANDSHAKE_SEQ = 0x52494B  # the seq of every handshake message; never one of rpyc's own (it counts from 0)
AUTH_TIMEOUT = 10.0  # seconds a peer has for the whole handshake (TLS included), not per read
MAX_HANDSHAKE_FRAME = 4096  # handshake frames are ~100 bytes; a plain server's first frames are small too
_FRAME_HEADER = struct.Struct("!LB")

# rpyc's message layout, in both wires; the kernel's handshake.py and compat.py use these, not their own.
# Written out rather than imported from rpyc.core: this file must not import rpyc before defer_imports().
#   wire 6 (rpyc >= 6):    msg, TUPLE2, brine(seq), brine(args)                = I1(msg) + brine((seq, args))
#   wire 5 (rpyc <= 5.x):  TUPLE3, SMALL_INT + msg, brine(seq), brine(args)    = brine((msg, seq, args))
# So the two wires differ in the first two bytes of a message only.
MSG_REQUEST, MSG_REPLY, MSG_EXCEPTION = 1, 2, 3  # rpyc.core.consts, the same in rpyc 5 and 6
MESSAGE_TYPES = (MSG_REQUEST, MSG_REPLY, MSG_EXCEPTION)
HANDLE_PING = 1  # rpyc.core.consts
LABEL_VALUE = 1  # rpyc.core.consts: a boxed value, as a PING's argument is
BRINE_TUPLE2, BRINE_TUPLE3, BRINE_SMALL_INT = 0x11, 0x12, 0x50  # brine's tags: 2-tuple, 3-tuple, the int 0


class HandshakeTimeout(OSError):
    """The whole handshake took longer than its deadline (a stalled or trickling peer)."""


class NotAFrame(ValueError):
    """The peer sent bytes that are not an rpyc channel frame; `data` is what it sent."""

    def __init__(self, data: bytes) -> None:
        ValueError.__init__(self, "not an rpyc frame: %r" % data[:40])
        self.data = data


def local_wire() -> int:
    """The wire the installed rpyc speaks: 6 for rpyc >= 6, else 5."""
    from rpyc.version import version

    return 6 if int(version[0]) >= 6 else 5


def read_exactly(sock: socket.socket, count: int, deadline: float) -> bytes:
    """`count` bytes, all of them before `deadline` (time.monotonic()), however the peer trickles them."""
    data = b""
    while len(data) < count:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise HandshakeTimeout("handshake not finished in time (got %d of %d bytes)" % (len(data), count))
        sock.settimeout(remaining)
        try:
            chunk = sock.recv(count - len(data))
        except socket.timeout:
            raise HandshakeTimeout(
                "handshake not finished in time (got %d of %d bytes)" % (len(data), count)
            ) from None
        if not chunk:
            raise EOFError("peer closed the connection" + (" mid-frame" if data else ""))
        data += chunk
    return data


def read_frame(sock: socket.socket, deadline: float, limit: int = MAX_HANDSHAKE_FRAME) -> tuple:
    """(raw frame bytes, payload) of one rpyc channel frame, read before `deadline`."""
    header = read_exactly(sock, _FRAME_HEADER.size, deadline)
    length, compressed = _FRAME_HEADER.unpack(header)
    if length > limit or compressed > 1:
        raise NotAFrame(header)
    rest = read_exactly(sock, length + 1, deadline)
    if rest[-1:] != b"\n":
        raise NotAFrame(header + rest)
    payload = rest[:-1]
    if compressed:
        import zlib

        payload = zlib.decompress(payload)
    return header + rest, payload


def encode_frame(payload: bytes) -> bytes:
    return _FRAME_HEADER.pack(len(payload), 0) + payload + b"\n"


def message_head(wire: int, msg: int) -> bytes:
    """The first two bytes of an rpyc message of type `msg` in `wire` (see the layout above)."""
    if wire >= 6:
        return bytes((msg, BRINE_TUPLE2))
    return bytes((BRINE_TUPLE3, BRINE_SMALL_INT + msg))


def message_type(wire: int, data: bytes) -> int:
    """The type of an rpyc message of `wire`, from its first two bytes; ValueError if it is not one."""
    msg = data[0] if wire >= 6 else data[1] - BRINE_SMALL_INT
    if msg not in MESSAGE_TYPES or bytes(data[:2]) != message_head(wire, msg):
        raise ValueError("not an rpyc %d message: %r" % (wire, bytes(data[:8])))
    return msg


def encode_message(wire: int, msg: int, seq: int, args) -> bytes:
    """An rpyc message payload in the given wire."""
    from rpyc.core import brine

    return message_head(wire, msg) + brine.dump((seq, args))[1:]


def decode_message(payload: bytes) -> tuple:
    """(wire, msg, seq, args) of an rpyc message payload of either wire; ValueError if it is none."""
    from rpyc.core import brine

    wire = 5 if payload[:1] == bytes((BRINE_TUPLE3,)) else 6
    try:
        msg = message_type(wire, payload)
        seq, args = brine.load(bytes((BRINE_TUPLE2,)) + payload[2:])
    except Exception:
        raise ValueError("not an rpyc message") from None
    return wire, msg, seq, args


def ping_request(wire: int, text: bytes) -> bytes:
    """A channel frame: an rpyc PING request carrying `text`, as rpyc's own Connection.ping sends."""
    args = (HANDLE_PING, (LABEL_VALUE, (text,)))
    return encode_frame(encode_message(wire, MSG_REQUEST, HANDSHAKE_SEQ, args))


def ping_reply(wire: int, text: bytes) -> bytes:
    """A channel frame: the rpyc reply to a handshake PING, carrying `text`."""
    return encode_frame(encode_message(wire, MSG_REPLY, HANDSHAKE_SEQ, (LABEL_VALUE, text)))


def ping_text(args, reply: bool = False):
    """The bytes a handshake PING request (or, with reply=True, its reply) carries; None if it is not one."""
    try:
        if reply:
            label, text = args
        else:
            handler, (label, (text,)) = args
            if handler != HANDLE_PING:
                return None
    except (TypeError, ValueError):
        return None
    return text if label == LABEL_VALUE and isinstance(text, bytes) else None


def tls_binding(certificate_der: bytes) -> bytes:
    """RFC 5929 tls-server-end-point of the board certificate (always SHA-256 here): what proofs bind to."""
    return b"tls-server-end-point:" + _sha256_class()(certificate_der).hexdigest().encode("ascii")


def endpoint_text(host: str, port: int) -> bytes:
    """The canonical name of an endpoint both ends compute alike: "loopback:PORT" for any loopback
    address, an IPv4-mapped IPv6 address as IPv4, no IPv6 scope; b"ADDRESS:PORT" otherwise."""
    host = str(host).split("%", 1)[0].strip("[]").lower()
    if host.startswith("::ffff:") and "." in host:
        host = host[len("::ffff:") :]
    if host.startswith("127.") or host in ("::1", "localhost"):
        host = "loopback"
    return ("%s:%d" % (host, int(port))).encode("ascii", "replace")


def proof_binding(tls_part: bytes, endpoint: bytes | None) -> bytes:
    """What a proof is bound to: the TLS certificate (if any) and, unless None, the dialled endpoint."""
    return tls_part if endpoint is None else tls_part + b"|to=" + endpoint


def port_claim_path(port: int) -> str:
    """Where our token-checking server on this machine records that it serves `port` (see claim_port)."""
    return os.path.join(os.path.dirname(default_token_path()), "ports", str(int(port)))


def claim_port(port: int) -> str | None:
    """Record that a token-checking server of ours listens on this machine's `port` (removed on exit).

    A kernel of this user that dials that loopback port later and meets a server that checks no token
    refuses it: a squatter that took the port (after a crash, say) gets no cells. Returns the path.
    """
    path = port_claim_path(port)
    try:
        write_private_file(path, "%d\n" % os.getpid())
    except TokenError:
        return None
    return path


def release_claim(path: str | None) -> None:
    if path:
        try:
            with open(path, encoding="ascii") as handle:
                mine = handle.read().strip() == str(os.getpid())
            if mine:
                os.remove(path)
        except (OSError, ValueError):
            pass


def release_claim_at_exit(path: str | None) -> str | None:
    """Remove the claim when SIGTERM stops the server (systemd, kill); main() removes it otherwise."""
    if path and hasattr(signal, "SIGTERM"):
        previous = signal.getsignal(signal.SIGTERM)

        def on_terminate(signum, frame) -> None:
            release_claim(path)
            signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)  # then stop as SIGTERM would have

        signal.signal(signal.SIGTERM, on_terminate)
    return path


def default_token_path() -> str:
    """Where the token is kept: $RPYC_IKERNEL_TOKEN_FILE, else <config dir>/rpyc_ikernel/token."""
    explicit = os.environ.get("RPYC_IKERNEL_TOKEN_FILE")
    if explicit:
        return explicit
    config = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return os.path.join(config, "rpyc_ikernel", "token")


MIN_TOKEN_LENGTH = 16  # characters; the tokens made here have 32 (24 random bytes)


class TokenError(Exception):
    """A token or token file the server will not use; the message is one line saying what to do."""


def new_token() -> str:
    import base64  # only here: most starts read a stored token

    return base64.urlsafe_b64encode(os.urandom(24)).decode("ascii").rstrip("=")


def check_token(token: str, source: str) -> str:
    """The token, or TokenError when it is too short to resist guessing."""
    if len(token) < MIN_TOKEN_LENGTH:
        raise TokenError(
            "the token %s has %d characters; use at least %d (a random one: delete the token file and"
            " restart the server to get one)" % (source, len(token), MIN_TOKEN_LENGTH)
        )
    return token


def exposure(stats: os.stat_result) -> str | None:
    """Who besides the owner can read or change a file with these stats ("readable by others"), if anyone."""
    if os.name == "nt":  # no POSIX permission bits
        return None
    mode = stat.S_IMODE(stats.st_mode)
    what = [word for bits, word in ((0o044, "readable"), (0o022, "writable")) if mode & bits]
    if not what:
        return None
    return "%s by others (mode %04o)" % (" and ".join(what), mode)


def load_or_create_token(path: str) -> tuple:
    """(token, created): the token stored at path, or a new random one written there with mode 0600.

    An empty (or blank) file gets a new token in a new 0600 file. A token file others can read or
    change, or one with a short token, is refused (TokenError): the server never uses a token that
    may be known elsewhere without the owner deciding so.
    """
    try:
        with open(path, encoding="utf-8") as handle:
            token = handle.read().strip()
            stats = os.fstat(handle.fileno())
    except FileNotFoundError:
        token = ""
    except (OSError, UnicodeError) as exc:
        raise TokenError("cannot read the token file %s: %s" % (path, getattr(exc, "strerror", None) or exc))
    if token:
        exposed = exposure(stats)
        if exposed:
            raise TokenError(
                "the token file %s is %s, so others may know the token: run chmod 600 %s to keep it,"
                " or delete the file to get a new one" % (path, exposed, path)
            )
        return check_token(token, "stored in %s" % path), False
    token = new_token()
    write_private_file(path, token + "\n")
    return token, True


def write_private_file(path: str, text: str) -> None:
    """Write a new file only its owner can read (0600), replacing whatever was at path in one step."""
    directory = os.path.dirname(path) or "."
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
        temporary = os.path.join(directory, ".%s.%d.tmp" % (os.path.basename(path), os.getpid()))
        if os.path.lexists(temporary):
            os.remove(temporary)
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
                if hasattr(os, "fchmod"):
                    os.fchmod(handle.fileno(), 0o600)  # exactly 0600, whatever the umask
                handle.write(text)
            os.replace(temporary, path)
        except BaseException:
            if os.path.lexists(temporary):
                os.remove(temporary)
            raise
    except OSError as exc:
        raise TokenError("cannot write the token file %s: %s" % (path, exc.strerror or exc))


def _sha256_class():
    # CPython's built-in SHA-256: hashlib would load OpenSSL's libcrypto, ~4 MB of a small board's RAM
    for name in ("_sha2", "_sha256"):
        try:
            return __import__(name).sha256
        except ImportError:
            continue
    import hashlib

    return hashlib.sha256


def hmac_sha256(key: bytes, message: bytes) -> str:
    """HMAC-SHA256 (RFC 2104) as hex, equal to hmac.new(key, message, 'sha256').hexdigest()."""
    sha256 = _sha256_class()
    if len(key) > 64:
        key = sha256(key).digest()
    key = key.ljust(64, b"\0")
    inner = sha256(bytes(byte ^ 0x36 for byte in key) + message).digest()
    return sha256(bytes(byte ^ 0x5C for byte in key) + inner).hexdigest()


def same_digest(first: bytes, second: bytes) -> bool:
    """Constant-time comparison (hmac.compare_digest without importing hmac)."""
    try:
        from _operator import _compare_digest
    except ImportError:
        from hmac import compare_digest as _compare_digest
    return _compare_digest(first, second)


def new_nonce() -> bytes:
    return os.urandom(16).hex().encode("ascii")


def proof(token: str, role: bytes, hello: bytes, challenge: bytes, binding: bytes = b"") -> str:
    """HMAC-SHA256 of role|hello|challenge|binding keyed with the token, as hex.

    hello and challenge carry both nonces (and the versions); binding ties the proof to the TLS channel.
    """
    return hmac_sha256(token.encode("utf-8"), b"|".join((role, hello, challenge, binding)))


def _auth_error(message: str) -> Exception:
    # rpyc is imported lazily here (see defer_imports): its AuthenticationError makes the server drop the peer
    from rpyc.utils.authenticators import AuthenticationError

    return AuthenticationError(message)


class BoardAuthenticator:
    """rpyc authenticator for the board: socket options, optional TLS, then handshake 2 (see above).

    Without a token it reads nothing: an open server is a plain rpyc classic server (a kernel's hello
    is answered by rpyc's own PING handler), so any rpyc client works with it.
    """

    def __init__(
        self,
        token: str | None,
        tls_context: ssl.SSLContext | None = None,  # noqa: F821
        auto_tls: AutoTLS | None = None,
    ) -> None:
        self.token = token
        self.tls_context = tls_context  # TLS required (--certfile)
        self.auto_tls = auto_tls  # TLS for kernels that start it (the certificate made here), else plain
        self.binding = getattr(tls_context, "rpyc_ikernel_binding", b"") if tls_context is not None else b""
        self.wire = local_wire()

    def __call__(self, sock: socket.socket):
        # rpyc leaves Nagle on: small replies after a large one would wait ~40 ms for an ACK
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        deadline = time.monotonic() + AUTH_TIMEOUT  # one deadline for TLS and the token check together
        binding = b""
        try:
            if self.tls_context is not None:
                sock.settimeout(AUTH_TIMEOUT)  # CPython bounds the whole TLS handshake by this timeout
                sock = self.tls_context.wrap_socket(sock, server_side=True)
                binding = self.binding
            elif self.auto_tls is not None and starts_tls(sock, deadline):
                sock.settimeout(max(0.1, deadline - time.monotonic()))
                sock = self.auto_tls.context().wrap_socket(sock, server_side=True)
                binding = self.auto_tls.binding
            if self.token is not None:
                self._challenge(sock, deadline, binding)
        except (OSError, EOFError, ValueError) as exc:
            raise _auth_error(str(exc) or type(exc).__name__) from None
        sock.settimeout(None)
        return sock, None

    def _challenge(self, sock: socket.socket, deadline: float, tls_binding_part: bytes = b"") -> None:
        _, payload = read_frame(sock, deadline)
        wire, msg, _, args = decode_message(payload)
        hello = ping_text(args) if msg == MSG_REQUEST else None
        if hello is None or not hello.startswith(HELLO + b" "):
            raise _auth_error("client did not start the rpyc_ikernel handshake (an older kernel?)")
        challenge = b"%s %s %s wire=%d auth=token %s" % (
            CHALLENGE,
            HANDSHAKE_VERSION,
            new_nonce(),
            self.wire,
            BIND_TO,
        )
        sock.sendall(ping_reply(wire, challenge))
        _, payload = read_frame(sock, deadline)
        words = (ping_text(decode_message(payload)[3]) or b"").split(b" ")
        if len(words) != 4 or b" ".join(words[:2]) != PROOF or not words[3].startswith(b"to="):
            sock.sendall(ping_reply(wire, DENIED + b" this board requires a token"))
            raise _auth_error("client sent no token")
        dialled = words[3][len(b"to=") :]
        binding = proof_binding(tls_binding_part, dialled)
        expected = proof(self.token, b"kernel", hello, challenge, binding)
        if not same_digest(expected.encode("ascii"), words[2]):
            reason = b"wrong token" + (b" (or a relayed connection)" if tls_binding_part else b"")
            sock.sendall(ping_reply(wire, DENIED + b" " + reason))
            raise _auth_error("wrong token")
        here = endpoint_text(*sock.getsockname()[:2])
        if not same_digest(dialled, here):
            # the kernel knows the token but made its proof for another endpoint: a relay (or a
            # forward the kernel was not told about). Saying where we are helps the user; a relay
            # could read it in /proc/net/tcp anyway.
            why = b"%s: the kernel dialled %s but this server is at %s" % (RELAYED, dialled, here)
            sock.sendall(ping_reply(wire, DENIED + b" " + why))
            raise _auth_error(why.decode("ascii", "replace"))
        answer = proof(self.token, b"board", hello, challenge, binding).encode("ascii")
        sock.sendall(ping_reply(wire, ACCEPTED + b" " + answer))


def server_tls_context(certfile: str, keyfile: str | None, ca: str | None = None) -> ssl.SSLContext:  # noqa: F821
    """TLS for the board's side; with `ca`, kernels must also present a certificate signed by it."""
    import ssl  # only when TLS is asked for: it costs memory on a small board

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certfile, keyfile)
    context.rpyc_ikernel_binding = tls_binding(_first_certificate_der(certfile))
    if ca:
        context.load_verify_locations(ca)
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def _first_certificate_der(certfile: str) -> bytes:
    """The DER bytes of the first certificate in a PEM file: the one the board shows to kernels.

    Decoded with binascii, not ssl: the server knows its certificate's fingerprint without loading
    OpenSSL (~4 MB of a board's memory) until a kernel starts TLS.
    """
    import binascii

    with open(certfile, encoding="ascii", errors="replace") as handle:
        text = handle.read()
    begin, end = "-----BEGIN CERTIFICATE-----", "-----END CERTIFICATE-----"
    start = text.find(begin)
    stop = text.find(end, start)
    if start < 0 or stop < 0:
        raise ValueError("no certificate in %s" % certfile)
    try:
        return binascii.a2b_base64(text[start + len(begin) : stop].encode("ascii", "replace"))
    except binascii.Error:
        raise ValueError("the certificate in %s is not valid PEM" % certfile) from None


def certificate_fingerprint(certfile: str) -> str:
    """SHA-256 of the board certificate (DER), as hex: what a kernel pins (TOKEN@sha256:FINGERPRINT)."""
    return _sha256_class()(_first_certificate_der(certfile)).hexdigest()


TLS_RECORD_HANDSHAKE = 0x16  # the first byte of a TLS ClientHello; a hello frame starts with 0x00


def starts_tls(sock: socket.socket, deadline: float) -> bool:
    """Whether the kernel's first byte starts TLS (peeked, not read): the kernel always speaks first."""
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise HandshakeTimeout("handshake not finished in time (got 0 bytes)")
    sock.settimeout(remaining)
    try:
        first = sock.recv(1, socket.MSG_PEEK)
    except socket.timeout:
        raise HandshakeTimeout("handshake not finished in time (got 0 bytes)") from None
    if not first:
        raise EOFError("peer closed the connection")
    return first[0] == TLS_RECORD_HANDSHAKE


class AutoTLS:
    """The certificate this server made for itself (see ensure_certificate), its TLS context made on
    first use: kernels that pinned its fingerprint start TLS; ssl loads only then."""

    def __init__(self, certfile: str, keyfile: str) -> None:
        self.certfile = certfile
        self.keyfile = keyfile
        self.fingerprint = certificate_fingerprint(certfile)
        self.binding = tls_binding(_first_certificate_der(certfile))
        self._context = None
        self._lock = threading.Lock()

    def context(self) -> ssl.SSLContext:  # noqa: F821
        with self._lock:
            if self._context is None:
                self._context = server_tls_context(self.certfile, self.keyfile)
            return self._context


CERTIFICATE_DAYS = 3650  # ends before 2038, which a 32-bit board's clock cannot pass; kernels pin, not date


def certificate_paths() -> tuple:
    """(certificate, key) the server makes for itself, beside the token file."""
    directory = os.path.join(os.path.dirname(default_token_path()), "tls")
    return os.path.join(directory, "board.pem"), os.path.join(directory, "board.key")


def ensure_certificate() -> tuple:
    """(certfile, keyfile, made now) of this server's self-signed certificate, made with the openssl
    command at first start; (None, None, why not) where it cannot be (no openssl, no _ssl module).

    Python's ssl module cannot make certificates; the openssl command is on most boards that have
    OpenSSL. Its modules are dropped from sys.modules again afterwards (a board keeps the memory).
    """
    certfile, keyfile = certificate_paths()
    if os.path.isfile(certfile) and os.path.isfile(keyfile):
        return certfile, keyfile, False
    from importlib.util import find_spec

    if find_spec("_ssl") is None:
        return None, None, "this Python has no ssl module"
    loaded = set(sys.modules)
    try:
        return _make_certificate(certfile, keyfile)
    finally:
        for name in set(sys.modules) - loaded:
            del sys.modules[name]
        gc.collect()


def _make_certificate(certfile: str, keyfile: str) -> tuple:
    import shutil
    import subprocess

    openssl = shutil.which("openssl")
    if openssl is None:
        return None, None, "no openssl command to make a certificate"
    directory = os.path.dirname(certfile)
    os.makedirs(os.path.dirname(directory), mode=0o700, exist_ok=True)
    # made in a directory of this process, which then takes the final name in one step: servers that
    # start at once as one user (a unit and a terminal, test boards) never mix one's key with another's
    # certificate; the first one in place wins and the others use it
    staging = "%s.new-%d" % (directory, os.getpid())
    os.makedirs(staging, mode=0o700, exist_ok=True)
    new_cert = os.path.join(staging, os.path.basename(certfile))
    new_key = os.path.join(staging, os.path.basename(keyfile))
    common = ["-x509", "-nodes", "-days", str(CERTIFICATE_DAYS), "-subj", "/CN=rpyc_ikernel board"]
    failure = ""
    try:
        for key in (["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"], ["-newkey", "rsa:2048"]):
            old_mask = os.umask(0o077)  # the key is never readable by others, not even for a moment
            try:
                done = subprocess.run(
                    [openssl, "req", *key, *common, "-keyout", new_key, "-out", new_cert],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    timeout=120,
                )
            except (OSError, subprocess.SubprocessError) as exc:
                done, failure = None, str(exc)
            finally:
                os.umask(old_mask)
            if done is not None and done.returncode == 0:
                os.chmod(new_key, 0o600)
                try:
                    os.rename(staging, directory)  # replaces only an empty directory
                except OSError:
                    if os.path.isfile(certfile) and os.path.isfile(keyfile):
                        return certfile, keyfile, False  # another server made it first
                    raise
                return certfile, keyfile, True
            if done is not None:
                lines = done.stderr.decode("utf-8", "replace").strip().splitlines()
                failure = lines[-1] if lines else "exit status %d" % done.returncode
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return None, None, "openssl could not make a certificate (%s)" % failure


# ----------------------------------------------------------------------------- accepting connections
# rpyc's accept loop ends for good on any accept() error but EINTR/EAGAIN: out of file descriptors
# (EMFILE), the server would stay alive and never accept again. It also lets any number of peers sit
# in the token handshake, and a peer that resets at once prints a traceback. ConnectionGuard fixes
# the three in a ThreadedServer subclass (see make_server).

# Connections in the handshake (TLS, token) each hold a thread blocked in recv: cheap (a few KB of a
# board's memory), so the cap is high enough that a hundred trickling peers do not reach it. When it is
# reached, a new connection still gets in: the oldest handshake of the address that holds the most
# slots is ended (answered "busy"), so a flood from one address ends its own handshakes first, and a
# legitimate kernel, whose handshake takes a few round trips, is never the oldest for long.
HANDSHAKE_LIMIT = 128  # connections still in the handshake, from all peers together
ACCEPT_BACKOFF = (0.05, 1.0)  # out of descriptors: first and longest wait before accepting again
EVENT_WINDOW = 10.0  # seconds: a connection problem is logged once, repeats as one count per window
_OUT_OF_DESCRIPTORS = tuple(
    getattr(errno, name) for name in ("EMFILE", "ENFILE", "ENOBUFS", "ENOMEM") if hasattr(errno, name)
)
# accept(2) on Linux: a connection that died in the queue surfaces as one of these; accept again
_ACCEPT_AGAIN = tuple(
    getattr(errno, name)
    for name in ("EINTR", "EAGAIN", "EWOULDBLOCK", "ECONNABORTED", "EPROTO", "ENETDOWN", "ENOPROTOOPT",
                 "EHOSTDOWN", "ENONET", "EHOSTUNREACH", "EOPNOTSUPP", "ENETUNREACH", "EPERM")
    if hasattr(errno, name)
)  # fmt: skip


class EventLog:
    """Logs a kind of connection problem once, then at most one count of its repeats per window.

    A flood of bad connections costs a few log lines (first one, then "N more in the last 10 s"),
    never one line (or traceback) per connection.
    """

    def __init__(self, logger: logging.Logger, window: float = EVENT_WINDOW) -> None:
        self.logger = logger
        self.window = window
        self._lock = threading.Lock()
        self._kinds: dict = {}  # kind -> [window start, repeats since then, last detail]

    def event(self, kind: str, detail: str) -> None:
        now = time.monotonic()
        with self._lock:
            self._flush(now)
            entry = self._kinds.get(kind)
            if entry is not None:
                entry[1] += 1
                entry[2] = detail
                return
            self._kinds[kind] = [now, 0, detail]
        self.logger.warning("%s: %s", kind, detail)

    def flush(self) -> None:
        """Log the counts of windows that have ended (the accept loop calls this twice a second)."""
        with self._lock:
            self._flush(time.monotonic())

    def _flush(self, now: float) -> None:
        for kind, (started, repeats, detail) in list(self._kinds.items()):
            if now - started < self.window:
                continue
            if repeats:
                self.logger.warning(
                    "%s: %d more in the last %.0f s (last: %s)", kind, repeats, now - started, detail
                )
                self._kinds[kind] = [now, 0, detail]
            else:
                del self._kinds[kind]  # a quiet window: the next one is logged at once again


def _describe(exc: BaseException) -> str:
    text = getattr(exc, "strerror", None) or str(exc)
    return "%s: %s" % (type(exc).__name__, text) if text else type(exc).__name__


def _shut_reading(descriptor: int) -> None:
    """End reading on a connection by its descriptor, so a thread blocked in its handshake returns.

    By descriptor, not socket object: once TLS wraps a socket, the SSLSocket holds the descriptor and
    the original object is detached. The caller holds the handshake lock, so the connection's thread
    has not closed it yet (it gives its slot back first), and the descriptor is still this connection.
    """
    if descriptor < 0:
        return
    try:
        duplicate = socket.fromfd(descriptor, socket.AF_INET, socket.SOCK_STREAM)
    except OSError:
        return
    try:
        duplicate.shutdown(socket.SHUT_RD)
    except OSError:
        pass
    finally:
        duplicate.close()


class ConnectionGuard:
    """Mixed into rpyc's ThreadedServer: survives running out of descriptors, caps handshakes, logs briefly.

    - accept() failing with EMFILE/ENFILE waits (ACCEPT_BACKOFF, doubling) and accepts again; the
      connections waiting meanwhile stay queued in the kernel and are served once descriptors free up.
    - at most HANDSHAKE_LIMIT connections may be in the handshake at once; one more takes the slot
      of the oldest handshake of the busiest address, which is answered "busy" and closed.
    - failed handshakes, dropped connections and peers that vanish are logged through EventLog.
    """

    handshake_limit = HANDSHAKE_LIMIT

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.events = EventLog(self.logger)
        self._handshaking: dict = {}  # socket -> peer address, while its handshake runs (oldest first)
        self._evicted: set = set()  # sockets whose handshake slot a newer connection took
        self._descriptors: dict = {}  # socket -> its descriptor (TLS moves it to an SSLSocket)
        self._handshake_lock = threading.Lock()
        self._inner_authenticator = self.authenticator
        self.authenticator = self._authenticate  # rpyc calls it in the connection's thread

    def accept(self) -> None:
        """Accept one connection and start its thread; replaces rpyc's, which gives up on EMFILE."""
        backoff = ACCEPT_BACKOFF[0]
        while self.active:
            try:
                sock, address = self.listener.accept()
                break
            except socket.timeout:
                self.events.flush()
            except OSError as exc:
                if not self.active:
                    return
                if exc.errno in _OUT_OF_DESCRIPTORS:
                    self.events.event(
                        "out of file descriptors",
                        "cannot accept connections (%s); retrying, %d in the handshake"
                        % (exc.strerror, len(self._handshaking)),
                    )
                    time.sleep(backoff)
                    backoff = min(backoff * 2, ACCEPT_BACKOFF[1])
                elif exc.errno not in _ACCEPT_AGAIN:
                    raise EOFError("listener failed: %s" % _describe(exc)) from None
        else:
            return
        sock.setblocking(True)
        self.clients.add(sock)
        self._accept_method(sock, address[0] if isinstance(address, tuple) else str(address))

    def _accept_method(self, sock: socket.socket, peer: str = "?") -> None:
        refused = self._take_handshake_slot(sock, peer)
        if refused:
            self._refuse(sock, peer, refused)
            return
        try:
            threading.Thread(
                target=self._serve_guarded, args=(sock, peer), name="rpyc client", daemon=True
            ).start()
        except RuntimeError as exc:  # "can't start new thread": out of memory or of threads
            self._end_handshake(sock)
            self._refuse(sock, peer, str(exc))

    def _refuse(self, sock: socket.socket, peer: str, reason: str) -> None:
        """Answer "busy" (so the kernel says so, and dials again) and close."""
        self.events.event("connection dropped", "%s: %s" % (peer, reason))
        self._answer_busy(sock, reason)
        self._discard(sock)

    def _answer_busy(self, sock: socket.socket, reason: str) -> None:
        # in the clear, so not when TLS is on (the kernel's TLS handshake would take it for garbage)
        if getattr(self._inner_authenticator, "tls_context", None) is not None:
            return  # TLS required: a kernel expects a TLS answer (with auto TLS a plain busy goes to both)
        try:
            sock.settimeout(1.0)
            sock.sendall(ping_reply(local_wire(), BUSY + b" " + reason.encode("ascii", "replace")))
        except (OSError, ValueError):
            pass

    def _take_handshake_slot(self, sock: socket.socket, peer: str) -> str | None:
        """Reserve a handshake slot for sock, ending the oldest handshake of the busiest address if
        they are all taken; the reason sock gets none, if it does not (a limit of 0)."""
        with self._handshake_lock:
            if len(self._handshaking) >= self.handshake_limit:
                if not self._handshaking:
                    return "this server takes no connections now"
                counts: dict = {}
                for each in self._handshaking.values():
                    counts[each] = counts.get(each, 0) + 1
                busiest = max(counts, key=counts.get)
                victim = next(s for s, p in self._handshaking.items() if p == busiest)  # its oldest
                del self._handshaking[victim]
                self._evicted.add(victim)
                _shut_reading(self._descriptors.pop(victim, -1))  # its thread answers "busy"
                self.events.event(
                    "handshake ended for a newer connection",
                    "%s: %d connections in the handshake, %d from that address"
                    % (busiest, self.handshake_limit, counts[busiest]),
                )
            self._handshaking[sock] = peer
            self._descriptors[sock] = sock.fileno()
        return None

    def _end_handshake(self, sock: socket.socket) -> bool:
        """Give the slot back; whether a newer connection took it (this handshake must then fail)."""
        with self._handshake_lock:
            self._handshaking.pop(sock, None)
            self._descriptors.pop(sock, None)
            if sock in self._evicted:
                self._evicted.discard(sock)
                return True
        return False

    def _authenticate(self, sock: socket.socket):
        """The real authenticator, with its outcome logged and the handshake slot given back."""
        peer = self._handshaking.get(sock, "?")
        try:
            if self._inner_authenticator is None:
                result = (sock, None)
            else:
                result = self._inner_authenticator(sock)
        except Exception as exc:
            if self._end_handshake(sock):
                self._answer_busy(sock, "too many connections in the handshake")
                raise _auth_error("handshake ended for a newer connection") from None
            reason = str(exc) or type(exc).__name__  # an AuthenticationError says what failed
            self.events.event("handshake failed", "%s: %s" % (peer, reason))
            raise
        if self._end_handshake(sock):  # finished just as a newer connection took its slot
            raise _auth_error("handshake ended for a newer connection")
        return result

    def _serve_guarded(self, sock: socket.socket, peer: str) -> None:
        """The connection's thread: rpyc's handshake and serving, with any failure as one logged event."""
        try:
            self._authenticate_and_serve_client(sock)
        except Exception as exc:  # e.g. the peer reset before rpyc asked for its address
            if self.active:
                self.events.event("connection failed", "%s: %s" % (peer, _describe(exc)))
        finally:
            self._end_handshake(sock)
            self._discard(sock)

    def _serve_client(self, sock: socket.socket, credentials) -> None:
        try:
            super()._serve_client(sock, credentials)
        except Exception as exc:  # rpyc would log it with a traceback, for a peer that just went away
            if self.active:  # a server that is stopping closes every connection itself: nothing to say
                self.events.event("connection ended", _describe(exc))

    def _discard(self, sock: socket.socket) -> None:
        self.clients.discard(sock)
        try:
            sock.close()
        except OSError:
            pass


class MainThreadExecutor:
    """Runs submitted cells one at a time on the main thread; interrupts them with a signal."""

    def __init__(self) -> None:
        self._jobs: queue.Queue = queue.Queue()
        self._running = None
        self._interrupt_wanted = False
        self._lock = threading.Lock()
        self._stopped = False
        self._terminal = None  # fd 2 as it was at start: the terminal, even while a cell captures fd 2
        self._ctrl_c_job = None  # the cell the last Ctrl-C in the terminal interrupted

    def register(self) -> None:
        """Make this executor visible to the agent and install the interrupt signal handlers."""
        module = types.ModuleType(EXECUTOR_MODULE)
        module.submit = self.submit
        module.interrupt = self.interrupt
        sys.modules[EXECUTOR_MODULE] = module
        signal.signal(INTERRUPT_SIGNAL, self._on_interrupt_signal)
        if signal.getsignal(signal.SIGINT) is signal.default_int_handler:  # not ignored (nohup, &)
            try:
                self._terminal = os.dup(2)
            except OSError:
                return
            signal.signal(signal.SIGINT, self._on_terminal_interrupt)

    def submit(self, job) -> None:
        """Queue a callable; it runs on the main thread after the cells queued before it."""
        self._jobs.put(job)

    def interrupt(self, job) -> bool:
        """Raise KeyboardInterrupt in `job` if it is running user code right now."""
        with self._lock:
            if self._running is not job:
                return False
            self._interrupt_wanted = True
        os.kill(os.getpid(), INTERRUPT_SIGNAL)
        return True

    def _on_interrupt_signal(self, signum, frame) -> None:
        # Runs on the main thread between bytecodes, or when a blocking call returns EINTR.
        job = self._running
        if self._interrupt_wanted and job is not None and getattr(job, "interruptible", False):
            self._interrupt_wanted = False
            if getattr(job, "waiting", 0):  # inside the agent's locks: it raises once they are released
                job.interrupt_event.set()
                return
            raise KeyboardInterrupt()

    def _on_terminal_interrupt(self, signum, frame) -> None:
        """Ctrl-C in the server's terminal: the first one interrupts the running cell, which says where
        the interrupt came from; another while that cell still runs, or one between cells, stops the
        server (a third then kills it at once)."""
        job = self._running
        if job is None or not hasattr(job, "interrupt_event"):
            raise KeyboardInterrupt()  # between cells: main() stops the server
        if self._ctrl_c_job is job:
            self._stopped = True
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            self._say("interrupted the running cell again; the server stops when it ends (Ctrl-C kills it)")
        else:
            self._ctrl_c_job = job
            self._say("interrupted the running cell; Ctrl-C again stops the server")
        if getattr(job, "waiting", 0) or not getattr(job, "interruptible", False):
            # inside the agent's locks, or not in user code yet: the agent raises it when it can
            job.interrupt_reason = TERMINAL_INTERRUPT
            job.interrupt_event.set()
            return
        raise KeyboardInterrupt(TERMINAL_INTERRUPT)

    def _say(self, text: str) -> None:
        """One line on the server's terminal (not into the cell, which captures fds 1 and 2)."""
        try:
            os.write(self._terminal, ("rpyc_ikernel server: %s\n" % text).encode("utf-8", "replace"))
        except (OSError, TypeError):
            pass

    def run_forever(self) -> None:
        while not self._stopped:
            try:
                job = self._jobs.get(timeout=0.5)
            except queue.Empty:
                continue
            with self._lock:
                self._running = job
                self._interrupt_wanted = False
            try:
                job()  # a cell job reports its own errors, interrupts included
            except Exception:
                logging.getLogger("rpyc_ikernel.server").exception("cell runner failed")
            finally:
                with self._lock:
                    self._running = None
                    self._interrupt_wanted = False

    def stop(self) -> None:
        self._stopped = True


class DeferredModule(types.ModuleType):
    """Stands in for a module until code first uses one of its attributes, then becomes it.

    rpyc imports ``ssl`` when it starts, whether or not TLS is used, and that alone costs a board
    about 4 MB of resident memory (OpenSSL's libraries). With this stand-in in ``sys.modules``,
    ``import ssl`` still works everywhere (rpyc, user cells, urllib); the real module loads on first use.
    A deferred package keeps its ``__path__``, so its submodules import as usual.
    """

    def __getattr__(self, name: str):
        if name == "__path__":  # the import system asks whether this is a package: it is not
            raise AttributeError(name)
        if sys.modules.get(self.__name__) is self:
            del sys.modules[self.__name__]
        real = importlib.import_module(self.__name__)
        self.__dict__.update(real.__dict__)  # earlier holders of the stand-in see the real module
        return getattr(real, name)


def defer_imports(names=DEFERRED_MODULES) -> None:
    """Put a DeferredModule in sys.modules for each module not imported yet that this Python has."""
    from importlib.util import find_spec

    for name in names:
        needs = names[name] if isinstance(names, dict) else None
        if name in sys.modules or (needs is not None and find_spec(needs) is None):
            continue
        spec = find_spec(name)
        if spec is None:
            continue
        stand_in = DeferredModule(name)
        if spec.submodule_search_locations is not None:
            stand_in.__path__ = spec.submodule_search_locations
        sys.modules[name] = stand_in
        parent, _, child = name.rpartition(".")
        if parent:  # `import concurrent.futures` then reads concurrent.futures (asyncio does)
            setattr(importlib.import_module(parent), child, stand_in)


DEFAULT_HOST = "127.0.0.1"  # this machine only; a board on the network is started with --host 0.0.0.0


def port_argument(text: str) -> int:
    """--port: a TCP port number, 0 for a free one."""
    import argparse

    try:
        port = int(text, 10)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(
            "%r is not a port: give a number from 1 to 65535 (0: any free one)" % text
        )
    return port


def build_parser() -> argparse.ArgumentParser:
    import argparse  # parse_arguments() drops it again

    parser = argparse.ArgumentParser(
        prog="python3 -m rpyc_ikernel.server",
        description="Serve this board to rpyc_ikernel (an rpyc classic server).",
    )
    parser.add_argument(
        "--host",
        default=DEFAULT_HOST,
        help="address to listen on (default %s: this machine only; 0.0.0.0 for every network interface,"
        " or one interface's address)" % DEFAULT_HOST,
    )
    parser.add_argument(
        "--port",
        type=port_argument,
        default=DEFAULT_PORT,
        help="TCP port (default %d; 0 picks a free one)" % DEFAULT_PORT,
    )
    auth = parser.add_argument_group("authentication and TLS")
    auth.add_argument(
        "--token",
        metavar="-",
        help="read the token kernels must prove they know from stdin (a token on the command line would"
        " show in ps). Default: $RPYC_IKERNEL_TOKEN, else the token file, created with a random token at"
        " first start. Tokens have at least %d characters" % MIN_TOKEN_LENGTH,
    )
    auth.add_argument("--token-file", help="where the token is stored (default %s)" % default_token_path())
    auth.add_argument(
        "--no-auth",
        action="store_true",
        help="accept any client, like rpyc's classic server: anyone who reaches the port can run code",
    )
    auth.add_argument("--certfile", help="TLS certificate (PEM); with --keyfile, connections are encrypted")
    auth.add_argument("--keyfile", help="TLS private key (PEM)")
    auth.add_argument(
        "--ca", help="also require kernels to present a TLS client certificate signed by this CA"
    )
    auth.add_argument(
        "--no-tls",
        action="store_true",
        help="do not make or use the server's own certificate: links are token-only and readable on the"
        " network (by default a self-signed certificate is made at first start with the openssl command,"
        " and kernels that pair with TOKEN@sha256:FINGERPRINT use TLS)",
    )
    auth.add_argument(
        "--pairing",
        action="store_true",
        help="print the pairing string TOKEN@sha256:FINGERPRINT that kernels elsewhere connect with (made"
        " at first use, like the token and certificate a start makes), and exit",
    )
    parser.add_argument(
        "--threads-only",
        action="store_true",
        help="run cells in worker threads instead of the main thread (interrupt is then best effort)",
    )
    parser.add_argument(
        "--name",
        help="the name this board announces on the network (default: this machine's host name)",
    )
    parser.add_argument(
        "--no-announce",
        action="store_true",
        help="do not announce this board on the network (mDNS/DNS-SD, %s); a server on loopback never"
        " does" % SERVICE_TYPE.rstrip("."),
    )
    parser.add_argument("--quiet", action="store_true", help="log only errors")
    parser.add_argument(
        "--systemd-unit",
        action="store_true",
        help="print a systemd unit that starts this server at boot with the other options given, and exit",
    )
    return parser


def _ascii_host(host: str):
    """The host as bytes when it is ASCII: socket resolves a str host with the idna codec, which
    imports unicodedata (~0.2 MB a board would carry for nothing)."""
    try:
        return host.encode("ascii")
    except UnicodeEncodeError:
        return host


def drop_builtin_netref_classes() -> None:
    """Free the netref classes rpyc makes at import for ~40 builtin types (~0.3 MB of a board's memory).

    They spare a peer's list, dict or function, received by reference, rpyc's HANDLE_INSPECT round
    trip. The board never gets those: the kernel sends it only what rpyc sends by value (str, bytes,
    numbers, tuples). Should one arrive after all, rpyc asks the peer about its type, as it does for
    every other class. Classes live in reference cycles, hence the collection.
    """
    from rpyc.core import netref

    getattr(netref, "builtin_classes_cache", {}).clear()
    gc.collect()


def make_server(host: str, port: int, authenticator: BoardAuthenticator | None = None) -> ThreadedServer:
    """A classic rpyc server bound to host:port (port 0 picks a free port)."""
    from rpyc.core.service import SlaveService
    from rpyc.utils.server import ThreadedServer

    class BoardServer(ConnectionGuard, ThreadedServer):
        """rpyc's ThreadedServer with the ConnectionGuard (rpyc is imported only here, see defer_imports)."""

    drop_builtin_netref_classes()

    return BoardServer(
        SlaveService,
        hostname=_ascii_host(host),
        port=port,
        reuse_addr=True,
        authenticator=authenticator,
        protocol_config={"allow_all_attrs": True, "allow_pickle": True},
        logger=logging.getLogger("rpyc_ikernel.server"),
    )


def parse_arguments(argv: list | None = None) -> types.SimpleNamespace:
    """The options, as a plain namespace. Options are parsed once: argparse and the modules it pulls in
    (gettext, locale, shutil, textwrap; ~0.3 MB) leave sys.modules afterwards, so a board gets that
    memory back for serving (nothing the server keeps refers to them)."""
    loaded = set(sys.modules)
    options = types.SimpleNamespace(**vars(build_parser().parse_args(argv)))
    for name in set(sys.modules) - loaded:
        del sys.modules[name]
    gc.collect()
    return options


def build_authenticator(args: types.SimpleNamespace) -> BoardAuthenticator | None:
    """The authenticator the options ask for, printing what a user needs to know (never the stored token)."""
    tls = None
    if args.certfile:
        tls = server_tls_context(args.certfile, args.keyfile, args.ca)
    if args.no_auth:
        print(
            "rpyc_ikernel server: WARNING: --no-auth: anyone who can reach this port can run any code"
            " on this machine. Use it only on a network you trust.",
            file=sys.stderr,
            flush=True,
        )
        return BoardAuthenticator(None, tls)
    token, shown, where = _token_for(args)
    auto = (
        None
        if tls is not None or getattr(args, "no_tls", False)
        else _auto_tls(token if shown else None, where)
    )
    return BoardAuthenticator(token, tls, auto)


def _auto_tls(new_token: str | None, where: str) -> AutoTLS | None:
    """The server's own certificate (made at first start), announced with the pairing string."""
    try:
        certfile, keyfile, made = ensure_certificate()
        auto = AutoTLS(certfile, keyfile) if certfile else None
    except (OSError, ValueError) as exc:
        auto, made = None, "cannot use the certificate: %s" % (getattr(exc, "strerror", None) or exc)
    if auto is None:
        print(
            "rpyc_ikernel server: no TLS (%s): links are token-only and readable on the network;"
            " --certfile/--keyfile encrypt them" % made,
            flush=True,
        )
        return None
    print(
        "rpyc_ikernel server: TLS certificate sha256:%s (%s %s); kernels elsewhere pair with"
        % (auto.fingerprint, "made now in" if made is True else "in", auto.certfile),
        flush=True,
    )
    if new_token:
        print("    %s@sha256:%s" % (new_token, auto.fingerprint), flush=True)
    else:
        print("    TOKEN@sha256:%s   (TOKEN: %s)" % (auto.fingerprint, where), flush=True)
    return auto


def _token_for(args: types.SimpleNamespace) -> tuple:
    """(token, whether it was just made and printed, where it is) from --token -, RPYC_IKERNEL_TOKEN or
    the token file."""
    created, where = False, "the token you gave"
    if args.token is not None:
        if args.token != "-":
            raise TokenError(
                "--token VALUE would show the token to every user of this machine (ps); use --token -"
                " (reads it from stdin), RPYC_IKERNEL_TOKEN or --token-file"
            )
        token = check_token(read_token_from_stdin(), "read from stdin")
        print("rpyc_ikernel server: kernels must give the token read from stdin", flush=True)
    elif os.environ.get("RPYC_IKERNEL_TOKEN"):
        token = check_token(os.environ["RPYC_IKERNEL_TOKEN"].strip(), "in RPYC_IKERNEL_TOKEN")
        print("rpyc_ikernel server: kernels must give the token set in RPYC_IKERNEL_TOKEN", flush=True)
    else:
        path = args.token_file or default_token_path()
        token, created = load_or_create_token(path)
        where = "cat %s" % path
        if created:
            print(
                "rpyc_ikernel server: new token (give it to the kernel as token=... or RPYC_IKERNEL_TOKEN):"
            )
            print("    %s" % token)
            print("  stored in %s (mode 0600)" % path, flush=True)
        else:
            print("rpyc_ikernel server: kernels must give the token stored in %s" % path, flush=True)
    return token, created, where


def print_pairing(args: types.SimpleNamespace) -> int:
    """`--pairing`: the one line a kernel elsewhere needs (stdout), so that `ssh board python3 server.py
    --pairing | python3 -m rpyc_ikernel.install --token -` pairs a laptop without copying by hand."""
    real_stdout = sys.stdout
    sys.stdout = sys.stderr  # what making the token and certificate says goes to the terminal, not the pipe
    try:
        token, _, _ = _token_for(args)
        certfile, _, made = ensure_certificate()
    except (TokenError, OSError, ValueError) as exc:
        certfile, made = None, "%s" % (getattr(exc, "strerror", None) or exc)
        token = None
    finally:
        sys.stdout = real_stdout
    if not token or not certfile:
        print("rpyc_ikernel server: no pairing string: %s" % made, file=sys.stderr)
        return 2
    print("%s@sha256:%s" % (token, certificate_fingerprint(certfile)), flush=True)
    return 0


def describe_security(authenticator: BoardAuthenticator | None) -> str:
    """A few words for the start line: token or not, TLS or not."""
    if authenticator is None or authenticator.token is None:
        what = "no token (anyone who reaches the port runs code)"
    else:
        what = "token"
    if authenticator is not None and authenticator.tls_context is not None:
        return what + ", TLS required"
    if authenticator is not None and authenticator.auto_tls is not None:
        return what + ", TLS for paired kernels (sha256:%s...)" % authenticator.auto_tls.fingerprint[:16]
    return what + ", no TLS"


def read_token_from_stdin() -> str:
    """A token from stdin (typed without echo on a terminal): keeps it out of ps and shell history."""
    if sys.stdin is not None and sys.stdin.isatty():
        import getpass  # a person typing: do not echo the token

        return getpass.getpass("token: ").strip()
    return (sys.stdin.readline() if sys.stdin is not None else "").strip()


def _reach_hint(host: str) -> str:
    if host in ("127.0.0.1", "localhost", "::1") or host.startswith("127."):
        return "; only this machine can connect (--host 0.0.0.0 listens on the network)"
    return ""


def _unit_quote(arg: str) -> str:
    if arg and not any(c in arg for c in " \t\"'\\$%;"):
        return arg
    return '"%s"' % arg.replace("\\", "\\\\").replace('"', '\\"').replace("$", "$$").replace("%", "%%")


def systemd_unit(argv: list) -> str:
    """A unit file that runs this server, with this Python and these options, as this user at boot.

    The token stays in the token file (mode 0600): a --token option is left out, since unit files
    are readable by every user.
    """
    import pwd  # only here: printing a unit is rare

    options, skip, dropped = [], False, False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--token" or arg.startswith("--token="):
            skip = arg == "--token"  # its value follows
            dropped = True
        elif arg != "--systemd-unit":
            options.append(arg)
    spec = globals().get("__spec__")
    if spec is not None and spec.name == "rpyc_ikernel.server":
        program = [sys.executable, "-m", "rpyc_ikernel.server"]
    else:
        program = [sys.executable, os.path.abspath(__file__)]
    user = pwd.getpwuid(os.getuid())
    exec_start = " ".join(_unit_quote(arg) for arg in program + options)
    return "\n".join(
        [
            "# rpyc_ikernel board server, started at boot. Install it with:",
            "#   python3 %s --systemd-unit > rpyc-ikernel.service"
            % " ".join(_unit_quote(a) for a in program[1:] + options),
            "#   sudo cp rpyc-ikernel.service /etc/systemd/system/",
            "#   sudo systemctl daemon-reload && sudo systemctl enable --now rpyc-ikernel",
            "# Logs (and the token's location): journalctl -u rpyc-ikernel",
            "# (--token left out: unit files are world-readable; the server uses its token file)"
            if dropped
            else "#",
            "[Unit]",
            "Description=rpyc_ikernel board server (Jupyter cells run here)",
            "Wants=network-online.target",
            "After=network-online.target",
            "",
            "[Service]",
            "Type=simple",
            "User=%s" % user.pw_name,
            "WorkingDirectory=%s" % _unit_quote(os.getcwd()),
            "Environment=PYTHONUNBUFFERED=1",
            "ExecStart=%s" % exec_start,
            "Restart=on-failure",
            "RestartSec=3",
            "",
            "[Install]",
            "WantedBy=multi-user.target",
            "",
        ]
    )


# ----------------------------------------------------------------------------- announcing the board
# A board server listening beyond loopback says so on its network with DNS-SD over multicast DNS
# (RFC 6762/6763): a service of type _rpyc-ikernel._tcp whose TXT records say what a kernel needs to
# know before it connects (never the token). This is a small responder of ours, not avahi: it binds
# 5353 with SO_REUSEADDR/SO_REUSEPORT beside avahi-daemon (both get every query; each answers for
# its own records), so it needs no privilege, no D-Bus and nothing outside the standard library. Its
# code is source text below, compiled (and select/fcntl imported) only when the server listens on the
# network: a server on loopback carries none of it.

MDNS_GROUP = "224.0.0.251"
MDNS_PORT = 5353
SERVICE_TYPE = "_rpyc-ikernel._tcp.local."
SERVICES_META = "_services._dns-sd._udp.local."
ANNOUNCE_TTL = 120  # seconds, RFC 6762's advice for records naming a host
_A, _PTR, _TXT, _SRV, _ANY = 1, 12, 16, 33, 255
_UNIQUE = 0x8001  # class IN with the cache-flush bit: these records are ours alone
_SIOCGIFADDR, _SIOCGIFFLAGS = 0x8915, 0x8913
_IP_PKTINFO = getattr(socket, "IP_PKTINFO", 8)
SERVER_VERSION = "0.1.0"  # rpyc_ikernel's version, also when this file is copied to a board alone


def listens_beyond_loopback(host: str) -> bool:
    if host in ("localhost", "::1") or host.startswith("127."):
        return False
    try:
        return not socket.gethostbyname(host).startswith("127.") if host not in ("", "::") else True
    except OSError:
        return True


# >>> announcer: its source, run by load_announcer() only when the server listens on the network
r'''


def _dns_labels(labels) -> bytes:
    """Labels in wire form, without the root (end a name with _dns_name's b"\\0")."""
    out = b""
    for label in labels:
        raw = label.encode("utf-8")[:63]
        out += bytes([len(raw)]) + raw
    return out


def _dns_name(name: str) -> bytes:
    return _dns_labels(name.rstrip(".").split(".")) + b"\0"


def _read_name(packet: bytes, offset: int) -> tuple:
    """A (lower-case, dotted) name and the offset after it; follows compression pointers."""
    labels, end, jumps = [], None, 0
    while True:
        length = packet[offset]
        if length & 0xC0 == 0xC0:
            end = offset + 2 if end is None else end
            offset = ((length & 0x3F) << 8) | packet[offset + 1]
            jumps += 1
            if jumps > 32:
                raise ValueError("a name loops")
            continue
        if length == 0:
            break
        labels.append(packet[offset + 1 : offset + 1 + length].decode("utf-8", "replace"))
        offset += 1 + length
    return ".".join(labels).lower() + ".", (offset + 1 if end is None else end)


def _record(name: bytes, kind: int, klass: int, ttl: int, data: bytes) -> bytes:
    return name + struct.pack("!HHIH", kind, klass, ttl, len(data)) + data


def board_txt(token: bool, tls: str, hostname: str) -> dict:
    """What a board tells the network about itself (never the token itself)."""
    return {
        "txtvers": "1",
        "version": SERVER_VERSION,
        "auth": "token" if token else "open",
        "tls": tls,
        "python": "%d.%d.%d" % sys.version_info[:3],
        "machine": os.uname().machine if hasattr(os, "uname") else "?",
        "hostname": hostname,
    }


def network_interfaces(host: str) -> list:
    """(index, IPv4 address) of the up, multicast-capable, non-loopback interfaces a server on host
    listens on: all of them for 0.0.0.0 / "" / "::", else the one that has that address."""
    import fcntl

    wanted = None
    if host not in ("", "0.0.0.0", "::"):
        try:
            wanted = socket.gethostbyname(host)
        except OSError:
            return []
    found = []
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        for index, name in socket.if_nameindex():
            request = struct.pack("16s16x", name.encode()[:15])
            try:
                flags = struct.unpack("H", fcntl.ioctl(probe, _SIOCGIFFLAGS, request)[16:18])[0]
                address = socket.inet_ntoa(fcntl.ioctl(probe, _SIOCGIFADDR, request)[20:24])
            except OSError:  # no IPv4 address
                continue
            if flags & 0x1 and not flags & 0x8 and flags & 0x1000 and wanted in (None, address):
                found.append((index, address))
    finally:
        probe.close()
    return found


class _AnnouncerRecords:
    """The board's records and how they are sent. (Announcer is three classes so that each is compiled
    on its own: one ~200-line statement would leave ~0.3 MB of compiler peak in the board's memory.)"""

    RESCAN = 10.0  # seconds between looks for interfaces that came up (Wi-Fi joining after boot)

    def __init__(self, name: str, port: int, host: str, txt: dict, say=print) -> None:
        self.base = self.name = (name.replace(".", "-") or "board")[:63]
        self.port, self.host, self.say = port, host, say
        self.txt = b"".join(
            bytes([len(item)]) + item
            for item in (("%s=%s" % pair).encode("utf-8")[:255] for pair in sorted(txt.items()))
        )
        self.interfaces = {}  # index -> address
        self.stopping = False
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if hasattr(socket, "SO_REUSEPORT"):
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        self.sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 255)
        self.sock.setsockopt(socket.IPPROTO_IP, _IP_PKTINFO, 1)
        self.sock.bind(("", MDNS_PORT))
        self.conflict = threading.Event()
        self.thread = threading.Thread(target=self._run, name="mdns announcer", daemon=True)

    # -- records
    @property
    def target(self) -> bytes:
        """The host name in the SRV record: name.local, so each board's address record is its own
        (boards cloned from one image share a host name) and `ping name.local` finds it too."""
        return _dns_name(self.name + ".local")

    def _instance(self) -> bytes:
        return _dns_labels([self.name]) + _dns_name(SERVICE_TYPE)

    def _instance_text(self) -> str:
        return (self.name + "." + SERVICE_TYPE).lower()

    def _records(self, address: str, ttl: int, wanted: set) -> list:
        instance = self._instance()
        records = []
        if "meta" in wanted:
            records.append(_record(_dns_name(SERVICES_META), _PTR, 1, ttl, _dns_name(SERVICE_TYPE)))
        if "ptr" in wanted:
            records.append(_record(_dns_name(SERVICE_TYPE), _PTR, 1, ttl, instance))
        if "srv" in wanted:
            data = struct.pack("!HHH", 0, 0, self.port) + self.target
            records.append(_record(instance, _SRV, _UNIQUE, ttl, data))
        if "txt" in wanted:
            records.append(_record(instance, _TXT, _UNIQUE, ttl, self.txt))
        if "a" in wanted:
            records.append(_record(self.target, _A, _UNIQUE, ttl, socket.inet_aton(address)))
        return records

    def _send(self, index: int, records: list, extra: list = (), to=None, ident: int = 0, question=b""):
        address = self.interfaces.get(index)
        if address is None or not records:
            return
        header = struct.pack("!6H", ident, 0x8400, 1 if question else 0, len(records), 0, len(extra))
        try:
            self.sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(address))
            self.sock.sendto(
                header + question + b"".join(records) + b"".join(extra), to or (MDNS_GROUP, MDNS_PORT)
            )
        except OSError:
            pass  # the interface went away; the next rescan forgets it

    def announce(self, ttl: int = ANNOUNCE_TTL) -> None:
        for index, address in list(self.interfaces.items()):
            self._send(index, self._records(address, ttl, {"ptr", "srv", "txt", "a"}))


class _AnnouncerLoop(_AnnouncerRecords):
    """Its thread: probe for the name, announce, answer queries, follow interfaces coming and going."""

    def start(self) -> None:
        self._rescan()
        self.thread.start()

    def stop(self) -> None:
        """Say goodbye (TTL 0: caches drop the board at once), then stop answering."""
        if self.stopping:
            return
        self.stopping = True
        for index, address in list(self.interfaces.items()):  # PTR/SRV/TXT; the host's A may be avahi's
            self._send(index, self._records(address, 0, {"ptr", "srv", "txt"}))
        try:
            self.sock.close()
        except OSError:
            pass

    def _rescan(self) -> None:
        current = dict(network_interfaces(self.host))
        for index, address in current.items():
            if self.interfaces.get(index) != address:
                try:
                    membership = socket.inet_aton(MDNS_GROUP) + socket.inet_aton(address)
                    self.sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, membership)
                except OSError:
                    pass  # joined already (an address changed), or the interface is going
        fresh = set(current.items()) - set(self.interfaces.items())
        self.interfaces = current
        if fresh and self.thread.is_alive():
            self.announce()

    def _run(self) -> None:
        import select

        try:
            self._probe(select)
            self.announce()
            self.say(
                "rpyc_ikernel server: announced on the network as %r (%s; --no-announce turns it off)"
                % (self.name, SERVICE_TYPE.rstrip("."))
            )
            announced = time.monotonic()
            second = True
            next_scan = time.monotonic() + self.RESCAN
            while not self.stopping:
                ready = select.select([self.sock], [], [], 1.0)[0]
                if ready:
                    try:
                        self._receive()
                    except OSError:  # one bad datagram or a vanished interface: keep answering
                        if self.stopping:
                            break
                now = time.monotonic()
                if second and now - announced >= 1.0:  # RFC 6762: announce at least twice, 1 s apart
                    second = False
                    self.announce()
                if now >= next_scan:
                    next_scan = now + self.RESCAN
                    self._rescan()
        except (OSError, ValueError):
            if not self.stopping:
                logging.getLogger("rpyc_ikernel.server").warning("announcing stopped", exc_info=True)

    def _probe(self, select) -> None:
        for attempt in range(60):
            self.conflict.clear()
            question = _dns_labels([self.name]) + _dns_name(SERVICE_TYPE) + struct.pack("!HH", _ANY, 1)
            for _ in range(3):
                for address in list(self.interfaces.values()):
                    header = struct.pack("!6H", 0, 0, 1, 0, 0, 0)
                    try:
                        self.sock.setsockopt(
                            socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(address)
                        )
                        self.sock.sendto(header + question, (MDNS_GROUP, MDNS_PORT))
                    except OSError:
                        pass
                deadline = time.monotonic() + 0.25
                while time.monotonic() < deadline and not self.conflict.is_set():
                    if select.select([self.sock], [], [], max(0.0, deadline - time.monotonic()))[0]:
                        self._receive()
            if not self.conflict.is_set():
                return
            taken = self.name
            self.name = "%s-%d" % (self.base, attempt + 2)
            self.say(
                "rpyc_ikernel server: another board on the network announces %r; this one is %r"
                % (taken, self.name)
            )


class Announcer(_AnnouncerLoop):
    """Answers mDNS queries for this board's service; announces at start, says goodbye at stop.

    Before it announces it asks whether another board already uses its name (RFC 6762 probing, in
    short) and, if so, takes name-2, name-3...: names on a network must be unique.
    """

    def _receive(self) -> None:
        packet, ancillary, _flags, peer = self.sock.recvmsg(9000, socket.CMSG_SPACE(12))
        index = 0
        for level, kind, data in ancillary:
            if level == socket.IPPROTO_IP and kind == _IP_PKTINFO and len(data) >= 4:
                index = struct.unpack("=i", data[:4])[0]
        try:
            self._answer(packet, index, peer)
        except (IndexError, ValueError, struct.error, UnicodeError):
            pass  # not a DNS message we can read: ignore it, as every responder does

    def _claims(self, packet: bytes, start: int, peer: tuple) -> bool:
        """Whether an SRV record for our name is another board's: another address, port or host."""
        port = struct.unpack("!H", packet[start + 4 : start + 6])[0]
        target = _read_name(packet, start + 6)[0]
        ours = port == self.port and target == _read_name(self.target, 0)[0]
        return not ours or peer[0] not in self.interfaces.values()

    def _answer(self, packet: bytes, index: int, peer: tuple) -> None:
        ident, flags, questions, answers = struct.unpack("!4H", packet[:8])
        offset = 12
        instance = self._instance_text()
        if flags & 0x8000:  # a response: does another board claim our name?
            for _ in range(answers):
                name, offset = _read_name(packet, offset)
                kind, _klass, _ttl, size = struct.unpack("!HHIH", packet[offset : offset + 10])
                offset += 10 + size
                if name == instance and kind == _SRV and self._claims(packet, offset - size, peer):
                    self.conflict.set()
            return
        if index not in self.interfaces:
            return
        wanted, asked = set(), []
        for _ in range(questions):
            start = offset
            name, offset = _read_name(packet, offset)
            kind = struct.unpack("!H", packet[offset : offset + 2])[0]
            offset += 4
            asked.append(packet[start:offset] if packet[start] & 0xC0 != 0xC0 else b"")
            if name == SERVICES_META and kind in (_PTR, _ANY):
                wanted.add("meta")
            elif name == SERVICE_TYPE and kind in (_PTR, _ANY):
                wanted.add("ptr")
            elif name == instance and kind in (_SRV, _ANY):
                wanted.add("srv")
            elif name == instance and kind in (_TXT, _ANY):
                wanted.add("txt")
            elif name == _read_name(self.target, 0)[0] and kind in (_A, _ANY):
                wanted.add("a")
        if not wanted:
            return
        address = self.interfaces[index]
        main = self._records(address, ANNOUNCE_TTL, wanted)
        extra = (
            self._records(address, ANNOUNCE_TTL, {"srv", "txt", "a"} - wanted)
            if wanted & {"ptr", "srv"}
            else []
        )
        if peer[1] != MDNS_PORT:  # a one-shot (legacy) querier: answer it directly, with its id
            question = asked[0] if len(asked) == 1 and asked[0] else b""
            self._send(index, main, extra, to=peer, ident=ident, question=question)
        else:
            self._send(index, main, extra)


'''  # <<< announcer


def load_announcer() -> bool:
    """Define the announcer: run the source between the marks above (a string, so a server on
    loopback neither compiles nor keeps it), read again from this file.

    Line by line and one def or class at a time: holding the whole file or compiling ~300 lines at
    once would leave its peak in a small board's memory. False when this file cannot be read again.
    """
    if "Announcer" in globals():
        return True
    end_mark = "'''  # <<< announcer"
    inside, first, chunk = False, 0, []
    try:
        with open(__file__, encoding="utf-8") as handle:
            for number, line in enumerate(handle):
                if not inside:
                    inside = line.startswith("# >>> announcer")
                    continue
                end = line.startswith(end_mark)
                if chunk and (end or line.startswith(("def ", "class "))):
                    exec(compile("\n" * first + "".join(chunk), __file__, "exec"), globals())
                    chunk = []
                if end:
                    break
                if line.startswith(("def ", "class ")):
                    first, chunk = number, [line]
                elif chunk:
                    chunk.append(line)
    except (OSError, ValueError, SyntaxError, NameError):
        return False
    return "Announcer" in globals()


def _goodbye_on_terminate(announcer):
    """A SIGTERM handler (systemd's stop): say goodbye, then end as SIGTERM always did. Raising
    SystemExit instead would not stop a server running a cell (the agent reports it as the cell's)."""

    def handler(signum, frame) -> None:
        announcer.stop()
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)

    return handler


def start_announcer(args, server, authenticator):
    """Announce the board where it listens on the network (not for loopback, not with --no-announce)."""
    if getattr(args, "no_announce", False) or not listens_beyond_loopback(args.host):
        return None
    if not load_announcer():
        print(
            "rpyc_ikernel server: not announced on the network (cannot read %s again)" % __file__,
            file=sys.stderr,
        )
        return None
    hostname = socket.gethostname().split(".")[0] or "board"
    token = authenticator is not None and bool(authenticator.token)
    tls = "no"  # "yes": every kernel must use TLS; "pair": kernels given the pairing string do
    if authenticator is not None and getattr(authenticator, "tls_context", None) is not None:
        tls = "yes"
    elif authenticator is not None and getattr(authenticator, "auto_tls", None) is not None:
        tls = "pair"
    defined = globals()  # by load_announcer()
    txt = defined["board_txt"](token, tls, hostname)
    try:
        announcer = defined["Announcer"](args.name or hostname, server.port, args.host, txt)
        announcer.start()
    except (OSError, ImportError) as exc:  # ImportError: no fcntl (not a POSIX system)
        print(
            "rpyc_ikernel server: not announced on the network (%s); kernels can still connect by"
            " address" % (getattr(exc, "strerror", None) or exc),
            file=sys.stderr,
            flush=True,
        )
        return None
    if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:  # systemd stops with SIGTERM: say goodbye
        signal.signal(signal.SIGTERM, _goodbye_on_terminate(announcer))
    if not announcer.interfaces:
        print(
            "rpyc_ikernel server: no network interface to announce on yet (looking again every %ds)"
            % announcer.RESCAN,
            file=sys.stderr,
            flush=True,
        )
    return announcer


# ----------------------------------------------------------------------------- a lean start
# Run as a program (`python3 server.py` on a board, or `-m`), this file is compiled in one piece before
# its first line runs, and the compiler's peak stays in the process: about 0.5 MB of a small board's
# memory for as long as the server runs. So the server starts once more, in place (exec: same pid,
# stdin, stdout, options), in a process that compiles nothing: LEAN_START, one line of -c, runs this
# file's code object, which this process compiled and marshalled into an unlinked temporary file it
# hands over by descriptor (the same interpreter writes and reads it, so the marshal format agrees;
# nothing is left on disk or goes stale, python -B and read-only directories are no obstacle).
# `ps` shows LEAN_START, then the file, the descriptor (":module" after it for -m) and the options given.

PROCESS_TITLE = "rpyc_ikernel board server"
PROCESS_NAME = "rpyc_ikernel"  # Linux's short name of the process (/proc/PID/comm: top, pgrep NAME)
LEAN_START = (
    "import marshal,sys;_LEAN_CODE=sys.argv.pop(2);f=open(int(_LEAN_CODE.partition(':')[0]),'rb');"
    "c=marshal.load(f);f.close();exec(c)  # %s:" % PROCESS_TITLE
)


def start_lean() -> None:
    """Replace this process by LEAN_START (see above); in that process, set what Python sets for a
    program (argv, __file__, __spec__, sys.path) as the first process had it.

    Returns at once in the lean process, and where the restart is not possible: not POSIX, no
    temporary file, or the interpreter's own options (-u, -X ..., -W ...) cannot be known, so could
    not be kept.
    """
    if "_LEAN_CODE" in globals():
        _finish_lean_start()
        return
    if os.name != "posix" or not sys.executable:
        return
    options = _interpreter_options()
    if options is None:
        return
    path = os.path.abspath(__file__)
    spec = globals().get("__spec__")
    try:
        with _marshalled_code(path) as code:
            lean = [LEAN_START, path, str(code.fileno()) + (":" + spec.name if spec is not None else "")]
            sys.stdout.flush()
            sys.stderr.flush()
            os.execv(sys.executable, [sys.executable, *options, "-c", *lean, *sys.argv[1:]])
    except (OSError, SyntaxError, ValueError):
        return  # carry on in this process


def _marshalled_code(path: str):
    """An unlinked temporary file holding path's code object, marshalled, its descriptor kept open
    across exec (until the file object is closed)."""
    import marshal
    import tempfile

    with open(path, "rb") as handle:
        code = compile(handle.read(), path, "exec", dont_inherit=True)
    holder = tempfile.TemporaryFile()
    holder.write(marshal.dumps(code))
    holder.seek(0)  # the descriptor's offset, which the next process starts reading at
    os.set_inheritable(holder.fileno(), True)
    return holder


def _finish_lean_start() -> None:
    main = sys.modules["__main__"]
    for name in ("f", "c"):  # LEAN_START's own names
        main.__dict__.pop(name, None)
    path, module = sys.argv.pop(1), main._LEAN_CODE.partition(":")[2]
    sys.argv[0] = path
    main.__file__ = path
    if module:  # as python -m module
        from importlib.machinery import ModuleSpec

        main.__spec__ = ModuleSpec(module, None, origin=path)
    elif sys.path and sys.path[0] == "":  # as python file.py: imports look beside the file first
        sys.path[0] = os.path.dirname(path)


def _interpreter_options() -> list | None:
    """The options this process's interpreter was started with, from its original command line."""
    original = getattr(sys, "orig_argv", None)  # Python 3.10+
    if not original:
        try:
            with open("/proc/self/cmdline", "rb") as handle:
                original = [os.fsdecode(arg) for arg in handle.read().split(b"\0")[:-1]]
        except OSError:
            return None
    given = sys.argv[1:]
    head = original[: len(original) - len(given)]
    if original[len(head) :] != given or len(head) < 2:
        return None
    if globals().get("__spec__") is None:  # python [options] server.py
        same = os.path.realpath(head[-1]) == os.path.realpath(__file__)
        return head[1:-1] if same else None
    return head[1:-2] if len(head) >= 3 and head[-2] == "-m" else None  # python [options] -m module


def name_process() -> None:
    """Show the process as rpyc_ikernel in top, `ps -e` and `pgrep rpyc_ikernel` (Linux's comm, 15
    characters at most) rather than as one more python3; elsewhere nothing changes."""
    try:
        with open("/proc/self/comm", "w") as handle:
            handle.write(PROCESS_NAME)
    except OSError:
        pass


def main(argv: list | None = None) -> int:
    defer_imports()
    args = parse_arguments(argv)
    if args.systemd_unit:
        sys.stdout.write(systemd_unit(sys.argv[1:] if argv is None else list(argv)))
        return 0
    if args.pairing:
        return print_pairing(args)
    logging.basicConfig(
        level=logging.ERROR if args.quiet else logging.WARNING,
        format="%(asctime)s %(name)s: %(message)s",
    )
    try:
        authenticator = build_authenticator(args)
    except TokenError as exc:
        print("rpyc_ikernel server: %s" % exc, file=sys.stderr)
        return 2
    except OSError as exc:  # ssl.SSLError is an OSError
        print("rpyc_ikernel server: cannot set up authentication/TLS: %s" % exc, file=sys.stderr)
        return 2
    try:
        server = make_server(args.host, args.port, authenticator)
    except (OSError, ValueError, UnicodeError) as exc:  # ValueError: a NUL in the host name
        in_use = getattr(exc, "errno", None) == errno.EADDRINUSE
        print(
            "rpyc_ikernel server: cannot listen on %s:%s: %s (%s)"
            % (
                args.host,
                args.port,
                getattr(exc, "strerror", None) or exc,
                "is another server running? try --port" if in_use else "check --host and --port",
            ),
            file=sys.stderr,
        )
        return 2
    claim = (
        release_claim_at_exit(claim_port(server.port))
        if authenticator is not None and authenticator.token
        else None
    )
    use_main_thread = not args.threads_only and INTERRUPT_SIGNAL is not None
    executor = MainThreadExecutor() if use_main_thread else None
    if executor is not None:
        executor.register()
    name_process()
    listen = getattr(server, "_listen", None)  # rpyc listens in start(): the line below must be true
    if listen is not None:
        listen()
    print(  # before the serving thread starts: a client that sees the port open finds this line
        "rpyc_ikernel board server listening on %s:%d (pid %d), %s%s"
        % (args.host, server.port, os.getpid(), describe_security(authenticator), _reach_hint(args.host)),
        flush=True,
    )
    serving = threading.Thread(target=server.start, name="rpyc server", daemon=True)
    serving.start()
    announcer = start_announcer(args, server, authenticator)
    try:
        if executor is not None:
            executor.run_forever()  # returns when a Ctrl-C in the terminal stopped it during a cell
            print("rpyc_ikernel server: stopped", file=sys.__stderr__ or sys.stderr, flush=True)
        else:
            serving.join()
    except KeyboardInterrupt:
        print("rpyc_ikernel server: stopped", file=sys.__stderr__ or sys.stderr, flush=True)
    finally:
        if announcer is not None:
            announcer.stop()
        server.close()
        release_claim(claim)
    return 0


if __name__ == "__main__":
    start_lean()
    sys.exit(main())
