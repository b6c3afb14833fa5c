"""A TCP proxy on 127.0.0.1 that delays what it forwards: a slow link for handshake tests.

Each direction keeps order and delays every chunk by `delay` seconds (one way, so the round trip
grows by twice that); `first_answer_delay` holds back only the board's first bytes (a late challenge).
"""

from __future__ import annotations

import queue
import socket
import threading
import time


class DelayProxy:
    """Forwards 127.0.0.1:<port> to 127.0.0.1:<target_port> with a one-way delay in each direction."""

    def __init__(self, target_port: int, delay: float = 0.0, first_answer_delay: float = 0.0) -> None:
        self.target_port = target_port
        self.delay = delay
        self.first_answer_delay = first_answer_delay
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.port = self.listener.getsockname()[1]
        self.connections = 0
        self._sockets: list = []
        threading.Thread(target=self._accept_loop, daemon=True).start()

    def _accept_loop(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            self._sockets += [client, upstream]
            self._direction(client, upstream, 0.0)
            self._direction(upstream, client, self.first_answer_delay)

    def _direction(self, source: socket.socket, sink: socket.socket, first_delay: float) -> None:
        chunks: queue.Queue = queue.Queue()

        def read() -> None:
            extra = first_delay
            while True:
                try:
                    data = source.recv(65536)
                except OSError:
                    data = b""
                chunks.put((time.monotonic() + self.delay + extra, data))
                extra = 0.0
                if not data:
                    return

        def write() -> None:
            while True:
                due, data = chunks.get()
                time.sleep(max(0.0, due - time.monotonic()))
                try:
                    if not data:
                        sink.shutdown(socket.SHUT_WR)
                        return
                    sink.sendall(data)
                except OSError:
                    return

        threading.Thread(target=read, daemon=True).start()
        threading.Thread(target=write, daemon=True).start()

    def close(self) -> None:
        self.listener.close()
        for sock in self._sockets:
            try:
                sock.close()
            except OSError:
                pass
