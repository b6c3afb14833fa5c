"""Boards on USB: reach a board's rpyc server through ``adb forward``.

Sipeed MaixPy/Lichee and Android-like boards often have no usable network, but they have adb over
USB. ``adb forward tcp:LOCAL tcp:PORT`` makes a port of this machine lead to a port of the board,
so the kernel dials 127.0.0.1:LOCAL and talks rpyc as with any other board. :class:`AdbForward` is
the board's tunnel (connector.Tunnel): made before the board is dialled, removed when the link
closes, and made again on a reconnect (adb drops its forwards when the device is unplugged).

Every adb call is bounded in time and every failure is one line that says what to do.
"""

from __future__ import annotations

import atexit
import os
import shutil
import socket
import subprocess
import threading
from dataclasses import dataclass, field

from . import settings
from .board import Board
from .connector import DEFAULT_PORT, Address, Connector
from .errors import BoardUnreachable
from .handshake import BOARD_TOKEN_FILE, BoardToken
from .server import TokenError, check_token

ADB_TIMEOUT = 10.0  # seconds an adb command may take (the first one may start the adb server)
# the board server's default token file, as the shell of `adb shell` finds it (server.default_token_path)
TOKEN_COMMAND = 'cat "${XDG_CONFIG_HOME:-$HOME/.config}/rpyc_ikernel/token"'

# what `adb devices` says about a device that cannot be used yet, and what to do about it
_STATE_HINTS = {
    "unauthorized": "accept the 'Allow USB debugging' prompt on the board, then try again",
    "offline": "unplug and replug the board, or run `adb kill-server`, then try again",
    "no permissions": "this user may not open the USB device: add a udev rule for it (see `adb devices`)",
    "recovery": "the board is in recovery mode: boot it normally",
    "bootloader": "the board is in its bootloader: boot it normally",
}


class AdbError(BoardUnreachable):
    """adb is missing, sees no usable device, or refused the forward."""


@dataclass
class AdbBoardAddress(Address):
    """A board's server port as seen on the adb device; shown as 'adb device SERIAL port N'."""

    forward: AdbForward | None = field(default=None, repr=False, compare=False)

    def __str__(self) -> str:
        serial = self.forward.device_label() if self.forward is not None else "(the only one)"
        return f"adb device {serial} port {self.port}"


class AdbForward:
    """``adb [-s SERIAL] forward tcp:LOCAL tcp:PORT``, and its removal; a Board tunnel."""

    def __init__(self, serial: str | None = None, remote_port: int = DEFAULT_PORT, adb: str = "adb") -> None:
        self.serial = serial or None
        self.remote_port = int(remote_port)
        self.adb = adb
        self.device: str | None = None  # the serial the forward was made on
        self.local_port: int | None = None
        self._lock = threading.Lock()
        self._token: BoardToken | None = None  # the board's token, read once per forward
        self._token_announced = False  # the cell was told the token was read through adb

    def device_label(self) -> str:
        return self.device or self.serial or "(the only one)"

    def describe(self) -> str:
        target = f"device {self.device_label()} tcp:{self.remote_port}"
        if self.local_port is None:
            return f"adb forward to {target} (not made yet)"
        return f"adb forward 127.0.0.1:{self.local_port} -> {target}"

    def open(self) -> Address:
        """Make the forward (once): check adb and the device, pick a free local port, forward it."""
        with self._lock:
            if self.local_port is None:
                device = self._pick_device()
                for attempt in range(3):
                    local_port = _free_local_port()
                    try:
                        self._run("-s", device, "forward", f"tcp:{local_port}", f"tcp:{self.remote_port}")
                        break
                    except AdbError as exc:  # someone took the port in between: pick another
                        if attempt == 2 or "in use" not in str(exc):
                            raise
                self.device, self.local_port = device, local_port
                atexit.register(self.close)
            return Address("127.0.0.1", self.local_port)

    def read_token(self) -> BoardToken:
        """The board server's token, read with `adb shell cat` (whoever may run adb shell on the board
        can read it anyway); once per forward, so a restarted server's new token is read again."""
        with self._lock:
            if self._token is None:
                self._token = self._read_token()
            found = self._token
            if found.token and not self._token_announced:
                self._token_announced = True
                notice = f"read the board's token through adb (adb shell cat {BOARD_TOKEN_FILE})"
                return BoardToken(found.token, found.source, notice)
            return found

    def _read_token(self) -> BoardToken:
        try:
            device = self.device or self.serial
            said = self._run(*(["-s", device] if device else []), "shell", TOKEN_COMMAND).strip()
        except AdbError as exc:  # "`adb ...` failed: cat: ...: No such file or directory", or no adb
            return BoardToken(None, f"adb shell could not read it: {str(exc).split('` failed: ', 1)[-1]}")
        source = "read through adb from the board's token file"
        if not said or len(said.split()) != 1:  # no file (adb without exit codes prints cat's complaint)
            why = said.splitlines()[0] if said else f"{BOARD_TOKEN_FILE} is empty"
            return BoardToken(None, f"adb shell could not read it: {why}")
        try:
            return BoardToken(check_token(said, source), source)
        except TokenError as exc:
            return BoardToken(None, str(exc))

    def close(self) -> None:
        """Remove the forward if we made one (best effort: the device may be gone already)."""
        with self._lock:
            self._token = None
            local_port, self.local_port = self.local_port, None
            if local_port is None:
                return
            atexit.unregister(self.close)
            try:
                self._run("-s", self.device, "forward", "--remove", f"tcp:{local_port}")
            except AdbError:
                pass

    def devices(self) -> dict[str, str]:
        """serial -> state ('device' when usable), as `adb devices` lists them."""
        listing = self._run("devices")
        found = {}
        for line in listing.splitlines():
            serial, tab, state = line.partition("\t")
            if tab and serial.strip():
                found[serial.strip()] = state.strip()
        return found

    def _pick_device(self) -> str:
        devices = self.devices()
        if self.serial is not None:
            if self.serial not in devices:
                known = ", ".join(devices) or "none"
                raise AdbError(
                    f"adb device {self.serial!r} is not connected (adb sees: {known}); check the cable"
                    " and `adb devices`, or use connect_adb() without serial"
                )
            return self._usable(self.serial, devices[self.serial])
        if not devices:
            raise AdbError(
                "no adb device found: plug the board in over USB, enable USB debugging, and check"
                " `adb devices`"
            )
        usable = [serial for serial, state in devices.items() if state == "device"]
        if len(usable) > 1:
            raise AdbError(
                f"several adb devices are connected ({', '.join(usable)}); pick one with"
                f' # exec(self.connect_adb(serial="{usable[0]}"))'
            )
        if usable:
            return usable[0]
        serial, state = next(iter(devices.items()))
        return self._usable(serial, state)

    @staticmethod
    def _usable(serial: str, state: str) -> str:
        if state == "device":
            return serial
        hint = _STATE_HINTS.get(state, "check `adb devices`")
        raise AdbError(f"adb device {serial} is {state}: {hint}")

    def _run(self, *args: str) -> str:
        """Run adb with args; its stdout, or AdbError with adb's own complaint."""
        executable = shutil.which(self.adb)
        if executable is None:
            raise AdbError(
                f"cannot run {self.adb!r}: not found on PATH; install Android platform-tools"
                " (e.g. `apt install adb`) and make sure the Jupyter server's PATH has it"
            )
        try:
            done = subprocess.run(
                [executable, *args],
                capture_output=True,
                text=True,
                timeout=ADB_TIMEOUT,
                stdin=subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired:
            raise AdbError(
                f"`adb {' '.join(args)}` did not finish within {ADB_TIMEOUT:.0f} s; try `adb kill-server`"
            )
        except OSError as exc:
            raise AdbError(f"cannot run {executable}: {exc.strerror or exc}")
        if done.returncode != 0:
            complaint = (done.stderr or done.stdout).strip().splitlines()
            reason = complaint[-1] if complaint else f"exit status {done.returncode}"
            raise AdbError(f"`adb {' '.join(args)}` failed: {reason}")
        return done.stdout


class AdbConnector(Connector):
    """A Connector whose tunnel is an adb forward; only its "nothing answered" message differs.

    adb accepts every connection on the local port and drops it when nothing listens on the
    device's port, so "did not answer" here nearly always means "no board server running there".
    """

    def not_rpyc(self, exc: BaseException) -> BoardUnreachable:
        port = self.address.port
        return AdbError(
            f"nothing on {self.address} answered as an rpyc server: start the board server on the board"
            f" (python3 server.py --port {port}), or give the port it listens on: connect_adb(port=...)"
        )


def adb_requested(environ: dict | None = None) -> bool:
    """Whether the default board is reached through adb (RPYC_IKERNEL_ADB, set by `install --adb`)."""
    environ = os.environ if environ is None else environ
    return settings.ADB.read(environ)


def adb_connector(
    serial: str | None = None, port: int | None = None, environ: dict | None = None, **options
) -> AdbConnector:
    """How to reach a board through an adb forward; options are Connector.configured's (timeout=,
    token=, tls=, ...), over the settings.

    serial and port default to the preset's (RPYC_IKERNEL_ADB_SERIAL / RPYC_IKERNEL_PORT, written by
    `install --adb`) when the environment asks for adb, else to the only device and port 18812: a
    LAN preset's port says nothing about a board on USB.
    """
    environ = os.environ if environ is None else environ
    if adb_requested(environ):
        serial = serial or settings.ADB_SERIAL.read(environ)
        port = Address.from_environment(environ).port if port is None else port
    port = DEFAULT_PORT if port is None else port
    forward = AdbForward(serial, port)
    address = AdbBoardAddress("127.0.0.1", forward.remote_port, forward=forward)
    return AdbConnector.configured(address, tunnel=forward, **options)


def adb_board(
    session_id: str,
    serial: str | None = None,
    port: int | None = None,
    environ: dict | None = None,
    trusted: bool | None = None,
    **options,
) -> Board:
    """A Board reached through an adb forward (see adb_connector)."""
    return Board(adb_connector(serial, port, environ, **options), session_id, trusted=trusted)


def _free_local_port() -> int:
    """A loopback port nobody listens on now (adb binds it a moment later)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
