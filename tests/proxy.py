"""A TCP proxy on 127.0.0.1 that tests control: drop every connection, or swallow traffic like a dead host.

Kept for the tests that use it: it is the link emulator (linkemu.py) with no delay and no bandwidth cap,
recording what the client sent.
"""

from __future__ import annotations

from linkemu import LinkEmulator

RECORD_LIMIT = 64 << 20  # bytes of client traffic kept for inspection


class Proxy(LinkEmulator):
    """Forwards 127.0.0.1:<port> to a target port; records what the client sent.

    ``blackhole = True``: accept and read, forward nothing, close nothing (a host that vanished).
    """

    def __init__(self, target_port: int) -> None:
        super().__init__(target_port, record_client_bytes=RECORD_LIMIT)
