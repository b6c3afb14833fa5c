"""The errors of the board link: one line each, saying what failed and what to do.

Every laptop-side module raises these (and only these) for board problems, so the kernel can show
them as one line instead of a traceback.
"""

from __future__ import annotations

import socket


class BoardError(Exception):
    """A problem with the board link, with a message a user can act on."""


class BoardAuthError(BoardError):
    """The board wants a token we do not have, refused ours, or failed TLS verification."""


class BoardUnreachable(BoardError):
    """The board could not be reached or did not answer as an rpyc server."""


class BoardConnectionLost(BoardError):
    """The link broke while a request was in flight."""


class BoardMisbehaved(BoardConnectionLost):
    """The board broke the protocol (a message too big or malformed); the link was closed.

    A running cell ends with it rather than reconnecting to repeat the request.
    """


class BoardRestarted(BoardConnectionLost):
    """The link came back, but to a new board process: the running cell and the namespace are gone."""


def describe_socket_error(exc: BaseException) -> str:
    """A few words for a socket failure ("timed out", "connection refused"), for one-line errors."""
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return "timed out"
    if isinstance(exc, socket.gaierror):
        return "unknown host name"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
