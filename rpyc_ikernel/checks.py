"""Checks of what users type (ports, host names, seconds): a bad value is one line saying what to give.

A value that slipped through would fail later and far away: a port of 70000 deep in the socket
layer, a NaN interval as a thread that never sleeps. Each check raises ValueError with the name the
user typed (``port=``, ``RPYC_IKERNEL_PORT``, ``--port``) and an example of a good value.
"""

from __future__ import annotations

import ipaddress
import math

MAX_SECONDS = 24 * 3600.0  # the longest interval or timeout anyone means: a day


def port_number(value: object, source: str) -> int:
    """A TCP port (1-65535) from an int or a string of digits; bools and floats are not ports."""
    problem = f"{_named(source, value)} is not a port: give a number from 1 to 65535, e.g. 18812"
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ValueError(problem)
    if isinstance(value, str):
        text = value.strip()
        if not (text.isascii() and text.isdigit()):
            raise ValueError(problem)
        value = int(text)
    if not 1 <= value <= 65535:
        raise ValueError(problem)
    return value


def host_name(value: object, source: str) -> str:
    """A host name or address: a non-empty string without spaces or control characters."""
    what = 'give the board\'s name or address, e.g. "192.168.1.5" or "raspberrypi.local"'
    if not isinstance(value, str):
        raise ValueError(f"{_named(source, value)} is not a host name: {what}")
    host = value.strip()
    if not host:
        raise ValueError(f"{source or 'the host name'} is empty: {what}")
    bad = [char for char in host if char.isspace() or not char.isprintable()]
    if bad:
        raise ValueError(f"{_named(source, value)} is not a host name (it contains {bad[0]!r}): {what}")
    if not _is_address(host):  # a name the resolver must take: it raises UnicodeError, not OSError
        long_label = next((label for label in host.rstrip(".").split(".") if len(label) > 63), None)
        if long_label is not None or len(host) > 253:
            part = f"a part of {len(long_label)} characters" if long_label else f"{len(host)} characters"
            raise ValueError(
                f"{_named(source, value)} is not a host name ({part}; DNS allows 63 a part, 253 all): {what}"
            )
        try:
            host.encode("idna")
        except UnicodeError as exc:
            raise ValueError(f"{_named(source, value)} is not a host name ({exc}): {what}") from None
    return host


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        return False
    return True


def seconds(
    value: object, source: str, example: float, minimum: float = 0.0, maximum: float = MAX_SECONDS
) -> float:
    """A number of seconds in [minimum, maximum]: finite, and neither a bool nor a string."""
    problem = f"{_named(source, value)} is not a number of seconds from {minimum:g} to {maximum:g}"
    problem += f", e.g. {example:g}"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(problem)
    if not minimum <= value <= maximum:  # False for NaN; ints too large for a float stay exact here
        raise ValueError(problem)
    if not math.isfinite(value):
        raise ValueError(problem)
    return float(value)


def _named(source: str, value: object) -> str:
    """How to quote the value: "port=70000" for a keyword, "'70000'" where the caller names the option."""
    return f"{source}={value!r}" if source else repr(value)
