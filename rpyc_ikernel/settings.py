"""Every ``RPYC_IKERNEL_*`` environment variable: its name, parser, default and help, in one place.

The kernel reads them from its environment, where the kernelspec's ``env`` (written by
``python -m rpyc_ikernel.install``) puts them too; install writes them with ``environment()``.
A value of only spaces counts as unset. A value that does not parse is one line naming the variable
and a good value (a ``SettingError``, which is a ``BoardError``: the kernel shows it in the cell).
Every on/off variable takes the same words (``ON`` / ``OFF``).

The board server (server.py, one standalone file) reads its two itself: ``RPYC_IKERNEL_TOKEN`` and
``RPYC_IKERNEL_TOKEN_FILE`` (the kernel reads the first through TOKEN, the second through the server's
default_token_path); they are declared here too, so this is the whole list (the README's table
is made from it: ``python -m rpyc_ikernel.settings``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .checks import host_name, port_number
from .errors import BoardError
from .server import DEFAULT_PORT

DEFAULT_HOST = "127.0.0.1"  # the default board: this machine's loopback
ON = ("1", "true", "yes", "on", "enabled")
OFF = ("0", "false", "no", "off", "disabled")


class SettingError(BoardError, ValueError):
    """An environment variable (or kernelspec env entry) whose value does not parse."""


def on_off(text: str, name: str) -> bool:
    """True for ON, False for OFF (any case); ValueError for anything else."""
    word = text.strip().lower()
    if word in ON or word in OFF:
        return word in ON
    raise ValueError(f"{name}={text!r} is neither on nor off: give 1 or 0 (or yes/no, true/false, on/off)")


def _text(text: str, name: str) -> str:
    return text


@dataclass(frozen=True)
class Setting:
    """One environment variable: what it is called, how its text becomes a value, what it means."""

    name: str
    help: str
    parse: Callable[[str, str], Any] = _text
    default: Any = None
    reader: str = "kernel"  # who reads it: "kernel", "server" (the board server) or "both"

    @property
    def key(self) -> str:
        """The keyword environment() takes for it: the name without RPYC_IKERNEL_, in lower case."""
        return self.name[len("RPYC_IKERNEL_") :].lower()

    def read(self, environ: Mapping[str, str] | None = None) -> Any:
        """The value in environ (default: os.environ), else the default; SettingError if it does not parse."""
        text = (os.environ if environ is None else environ).get(self.name) or ""
        if not text.strip():
            return self.default
        try:
            return self.parse(text.strip(), self.name)
        except ValueError as exc:
            raise SettingError(f"{exc} (environment or kernelspec)") from None

    def text(self, value: Any) -> str:
        """value as this variable's text, as install writes it into a kernelspec."""
        if self.parse is on_off:
            return "1" if value else "0"
        return str(value)


HOST = Setting("RPYC_IKERNEL_HOST", "the default board's host name or address", host_name, DEFAULT_HOST)
PORT = Setting("RPYC_IKERNEL_PORT", "the default board's port", port_number, DEFAULT_PORT)
TOKEN = Setting(
    "RPYC_IKERNEL_TOKEN",
    "the board's token (or its pairing string TOKEN@sha256:FINGERPRINT); the board server: the token"
    " kernels must prove",
    reader="both",
)
TOKEN_FILE = Setting(
    "RPYC_IKERNEL_TOKEN_FILE",
    "the board server's token file (default ~/.config/rpyc_ikernel/token); a kernel reads the same"
    " file for a board on its own machine",
    reader="server",  # the kernel finds it with server.default_token_path, the same rule
)
TLS = Setting("RPYC_IKERNEL_TLS", "connect with TLS", on_off, False)
CA = Setting("RPYC_IKERNEL_CA", "CA file that signed the board's certificate; implies TLS")
CERTFILE = Setting("RPYC_IKERNEL_CERTFILE", "the kernel's certificate, for a board started with --ca")
KEYFILE = Setting("RPYC_IKERNEL_KEYFILE", "the key of RPYC_IKERNEL_CERTFILE")
ALLOW_OPEN = Setting(
    "RPYC_IKERNEL_ALLOW_OPEN", "with a token, still accept a board that checks none", on_off, False
)
FORWARD = Setting(
    "RPYC_IKERNEL_FORWARD",
    "HOST:PORT the board server sees the kernel's connection arrive on, when a forward the kernel does"
    " not make (ssh -L, NAT) is in between",
)
ADB = Setting("RPYC_IKERNEL_ADB", "reach the default board through adb (USB)", on_off, False)
ADB_SERIAL = Setting("RPYC_IKERNEL_ADB_SERIAL", "the adb device's serial (default: the only device)")
TRUST_BOARD_HTML = Setting(
    "RPYC_IKERNEL_TRUST_BOARD_HTML",
    "show the board's JavaScript and HTML with script as they are (default: shown inert)",
    on_off,
    False,
)

SETTINGS = (HOST, PORT, TOKEN, TOKEN_FILE, TLS, CA, CERTFILE, KEYFILE, ALLOW_OPEN, FORWARD, ADB, ADB_SERIAL,
            TRUST_BOARD_HTML)  # fmt: skip
BY_NAME = {setting.name: setting for setting in SETTINGS}


def environment(**values: Any) -> dict[str, str]:
    """The env entries for the given settings, by key (host=..., port=..., tls=True); None and False
    values are left out, so a kernelspec holds only what its preset chose."""
    by_key = {setting.key: setting for setting in SETTINGS}
    return {
        by_key[key].name: by_key[key].text(value)
        for key, value in values.items()
        if value is not None and value is not False
    }


def markdown_table() -> str:
    """The README's table of the variables."""
    rows = ["| variable | read by | meaning |", "| --- | --- | --- |"]
    for setting in SETTINGS:
        meaning = setting.help + (" (on/off)" if setting.parse is on_off else "")
        reader = {"both": "kernel and board server", "server": "board server"}.get(setting.reader, "kernel")
        rows.append(f"| `{setting.name}` | {reader} | {meaning} |")
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    print(markdown_table(), end="")
