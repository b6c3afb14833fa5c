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

import argparse
import base64
import importlib
import logging
import os
import queue
import signal
import socket
import sys
import threading
import types

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing, which costs a board memory
if TYPE_CHECKING:
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

# ----------------------------------------------------------------------------- token authentication
# A challenge-response run on the raw socket before rpyc starts, so the token never crosses the wire:
#   board  -> kernel: "RPYC_IKERNEL AUTH 1 <board nonce>\n"
#   kernel -> board : "<kernel nonce> <HMAC(token, 'kernel|' + board nonce + '|' + kernel nonce)>\n"
#   board  -> kernel: "OK <HMAC(token, 'board|' + kernel nonce + '|' + board nonce)>\n"  or "DENIED <why>\n"
# The kernel checks the board's proof too, so it never sends code to a board that does not know the token.
# The kernel side imports these helpers from here: one definition of the protocol.

AUTH_BANNER = b"RPYC_IKERNEL AUTH 1 "
AUTH_TIMEOUT = 10.0  # seconds a peer has to complete the handshake
_MAX_LINE = 512


def default_token_path() -> str:
    """Where the token is kept: $RPYC_IKERNEL_TOKEN_FILE, else <config dir>/rpyc_ikernel/token."""
    explicit = os.environ.get("RPYC_IKERNEL_TOKEN_FILE")
    if explicit:
        return explicit
    config = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return os.path.join(config, "rpyc_ikernel", "token")


def read_token_file(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read().strip() or None
    except OSError:
        return None


def load_or_create_token(path: str) -> tuple:
    """(token, created): the stored token, or a new random one written with mode 0600."""
    token = read_token_file(path)
    if token:
        return token, False
    token = base64.urlsafe_b64encode(os.urandom(24)).decode("ascii").rstrip("=")
    os.makedirs(os.path.dirname(path) or ".", mode=0o700, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write(token + "\n")
    return token, True


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


def proof(token: str, role: bytes, first: bytes, second: bytes) -> str:
    """HMAC-SHA256 of role|first|second keyed with the token, as hex."""
    return hmac_sha256(token.encode("utf-8"), role + b"|" + first + b"|" + second)


def read_line(sock: socket.socket) -> bytes:
    """One newline-terminated line (without the newline); reads byte-wise so nothing after it is consumed."""
    data = bytearray()
    while not data.endswith(b"\n"):
        chunk = sock.recv(1)
        if not chunk:
            raise EOFError("peer closed the connection")
        data += chunk
        if len(data) > _MAX_LINE:
            raise ValueError("line too long")
    return bytes(data[:-1])


def _auth_error(message: str) -> Exception:
    # rpyc is imported lazily here (see defer_imports): its AuthenticationError makes the server drop the peer
    from rpyc.utils.authenticators import AuthenticationError

    return AuthenticationError(message)


class BoardAuthenticator:
    """rpyc authenticator for the board: socket options, optional TLS, then the token challenge-response."""

    def __init__(self, token: str | None, tls_context: ssl.SSLContext | None = None) -> None:  # noqa: F821
        self.token = token
        self.tls_context = tls_context

    def __call__(self, sock: socket.socket):
        # rpyc leaves Nagle on: small replies after a large one would wait ~40 ms for an ACK
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.settimeout(AUTH_TIMEOUT)
        try:
            if self.tls_context is not None:
                sock = self.tls_context.wrap_socket(sock, server_side=True)
            if self.token is not None:
                self._challenge(sock)
        except (OSError, EOFError, ValueError) as exc:
            raise _auth_error(str(exc)) from None
        sock.settimeout(None)
        return sock, None

    def _challenge(self, sock: socket.socket) -> None:
        board_nonce = new_nonce()
        sock.sendall(AUTH_BANNER + board_nonce + b"\n")
        answer = read_line(sock).split(b" ")
        if len(answer) != 2 or not answer[0]:
            sock.sendall(b"DENIED this board requires a token\n")
            raise _auth_error("client sent no token")
        kernel_nonce, kernel_proof = answer
        expected = proof(self.token, b"kernel", board_nonce, kernel_nonce)
        if not same_digest(expected.encode("ascii"), kernel_proof):
            sock.sendall(b"DENIED wrong token\n")
            raise _auth_error("wrong token")
        sock.sendall(b"OK " + proof(self.token, b"board", kernel_nonce, board_nonce).encode("ascii") + b"\n")


def server_tls_context(certfile: str, keyfile: str | None, ca: str | None = None) -> ssl.SSLContext:  # noqa: F821
    """TLS for the board's side; with `ca`, kernels must also present a certificate signed by it."""
    import ssl  # only when TLS is asked for: it costs memory on a small board

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certfile, keyfile)
    if ca:
        context.load_verify_locations(ca)
        context.verify_mode = ssl.CERT_REQUIRED
    return context


class MainThreadExecutor:
    """Runs submitted cells one at a time on the main thread; interrupts them with a signal."""

    def __init__(self) -> None:
        self._jobs: queue.Queue = queue.Queue()
        self._running = None
        self._interrupt_wanted = False
        self._lock = threading.Lock()
        self._stopped = False

    def register(self) -> None:
        """Make this executor visible to the agent and install the interrupt signal handler."""
        module = types.ModuleType(EXECUTOR_MODULE)
        module.submit = self.submit
        module.interrupt = self.interrupt
        sys.modules[EXECUTOR_MODULE] = module
        signal.signal(INTERRUPT_SIGNAL, self._on_interrupt_signal)

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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python3 -m rpyc_ikernel.server",
        description="Serve this board to rpyc_ikernel (an rpyc classic server).",
    )
    parser.add_argument(
        "--host",
        default="0.0.0.0",
        help="address to listen on (default 0.0.0.0: every interface; 127.0.0.1 for this machine only)",
    )
    parser.add_argument(
        "--port",
        type=int,
        default=DEFAULT_PORT,
        help="TCP port (default %d; 0 picks a free one)" % DEFAULT_PORT,
    )
    auth = parser.add_argument_group("authentication and TLS")
    auth.add_argument(
        "--token",
        help="the token kernels must prove they know (default: $RPYC_IKERNEL_TOKEN, else the token file,"
        " created with a random token at first start)",
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
    parser.add_argument(
        "--threads-only",
        action="store_true",
        help="run cells in worker threads instead of the main thread (interrupt is then best effort)",
    )
    parser.add_argument("--quiet", action="store_true", help="log only errors")
    return parser


def _ascii_host(host: str):
    """The host as bytes when it is ASCII: socket resolves a str host with the idna codec, which
    imports unicodedata (~0.2 MB a board would carry for nothing)."""
    try:
        return host.encode("ascii")
    except UnicodeEncodeError:
        return host


def make_server(host: str, port: int, authenticator: BoardAuthenticator | None = None) -> ThreadedServer:
    """A classic rpyc server bound to host:port (port 0 picks a free port)."""
    from rpyc.core.service import SlaveService
    from rpyc.utils.server import ThreadedServer

    return ThreadedServer(
        SlaveService,
        hostname=_ascii_host(host),
        port=port,
        reuse_addr=True,
        authenticator=authenticator,
        protocol_config={"allow_all_attrs": True, "allow_pickle": True},
        logger=logging.getLogger("rpyc_ikernel.server"),
    )


def build_authenticator(args: argparse.Namespace) -> BoardAuthenticator | None:
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
    token = args.token or os.environ.get("RPYC_IKERNEL_TOKEN")
    if token:
        print(
            "rpyc_ikernel server: kernels must give the token set with --token/RPYC_IKERNEL_TOKEN", flush=True
        )
    else:
        path = args.token_file or default_token_path()
        token, created = load_or_create_token(path)
        if created:
            print(
                "rpyc_ikernel server: new token (give it to the kernel as token=... or RPYC_IKERNEL_TOKEN):"
            )
            print("    %s" % token)
            print("  stored in %s (mode 0600)" % path, flush=True)
        else:
            print("rpyc_ikernel server: kernels must give the token stored in %s" % path, flush=True)
    return BoardAuthenticator(token, tls)


def main(argv: list | None = None) -> int:
    defer_imports()
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.ERROR if args.quiet else logging.WARNING,
        format="%(asctime)s %(name)s: %(message)s",
    )
    try:
        authenticator = build_authenticator(args)
    except OSError as exc:  # ssl.SSLError is an OSError
        print("rpyc_ikernel server: cannot set up authentication/TLS: %s" % exc, file=sys.stderr)
        return 2
    try:
        server = make_server(args.host, args.port, authenticator)
    except OSError as exc:
        print(
            "rpyc_ikernel server: cannot listen on %s:%s: %s (is another server running? try --port)"
            % (args.host, args.port, exc.strerror or exc),
            file=sys.stderr,
        )
        return 2
    use_main_thread = not args.threads_only and INTERRUPT_SIGNAL is not None
    executor = MainThreadExecutor() if use_main_thread else None
    if executor is not None:
        executor.register()
    serving = threading.Thread(target=server.start, name="rpyc server", daemon=True)
    serving.start()
    print(
        "rpyc_ikernel board server listening on %s:%d (pid %d)" % (args.host, server.port, os.getpid()),
        flush=True,
    )
    try:
        if executor is not None:
            executor.run_forever()
        else:
            serving.join()
    except KeyboardInterrupt:
        print("rpyc_ikernel server: stopped", file=sys.stderr)
    finally:
        server.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
