"""A stand-in for Android's `adb` command line, so adb boards can be tested without a device.

It speaks the part of adb's CLI that rpyc_ikernel uses, with adb's exit codes and error lines:

    adb devices
    adb [-s SERIAL] forward tcp:LOCAL tcp:REMOTE     (LOCAL 0: pick a port and print it)
    adb [-s SERIAL] forward --remove tcp:LOCAL
    adb forward --remove-all
    adb forward --list
    adb [-s SERIAL] shell COMMAND...                 (run by sh on "the device", exit status passed on)

The "device" is this machine: a forward runs a small TCP forwarder process from 127.0.0.1:LOCAL to
127.0.0.1:REMOTE, recorded in $FAKE_ADB_STATE/forward-LOCAL.json so that --remove can stop it. As
with real adb, removing a forward stops new connections; connections already made run to their end.

Environment: FAKE_ADB_STATE (a directory, required), FAKE_ADB_DEVICES (comma-separated SERIAL or
SERIAL:STATE; unset means one device "FAKE0001"; empty means no device), FAKE_ADB_HOME (the home of
the device's shell user: `adb shell` then runs with HOME set to it and no XDG_CONFIG_HOME, like a
board's root shell; unset: this process's environment).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path


def fail(message: str) -> None:
    print(f"adb: error: {message}", file=sys.stderr)
    sys.exit(1)


def state_dir() -> Path:
    path = Path(os.environ["FAKE_ADB_STATE"])
    path.mkdir(parents=True, exist_ok=True)
    return path


def devices() -> dict:
    spec = os.environ.get("FAKE_ADB_DEVICES", "FAKE0001")
    found = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        serial, _, state = item.partition(":")
        found[serial] = state or "device"
    return found


def pick_device(serial: str | None) -> str:
    known = devices()
    if serial is not None:
        if serial not in known:
            fail(f"device '{serial}' not found")
    elif not known:
        fail("no devices/emulators found")
    elif len(known) > 1:
        fail("more than one device/emulator")
    else:
        serial = next(iter(known))
    if known[serial] != "device":
        fail(f"device {known[serial]}")
    return serial


def tcp_port(spec: str) -> int:
    if not spec.startswith("tcp:"):
        fail(f"cannot parse '{spec}': only tcp:PORT is supported here")
    return int(spec[4:])


def forwards() -> list:
    entries = []
    for path in sorted(state_dir().glob("forward-*.json")):
        entries.append(json.loads(path.read_text()))
    return entries


def remove(entry: dict) -> None:
    try:
        os.kill(entry["pid"], signal.SIGTERM)
    except ProcessLookupError:
        pass
    (state_dir() / f"forward-{entry['local']}.json").unlink(missing_ok=True)


def forward(serial: str | None, args: list) -> None:
    if args and args[0] == "--list":
        for entry in forwards():
            print(f"{entry['serial']} tcp:{entry['local']} tcp:{entry['remote']}")
        return
    if args and args[0] == "--remove-all":
        for entry in forwards():
            remove(entry)
        return
    if args and args[0] == "--remove":
        local = tcp_port(args[1])
        matching = [entry for entry in forwards() if entry["local"] == local]
        if not matching:
            fail(f"listener 'tcp:{local}' not found")
        remove(matching[0])
        return
    args = [arg for arg in args if arg != "--no-rebind"]
    device = pick_device(serial)
    local, remote = tcp_port(args[0]), tcp_port(args[1])
    listener = socket.socket()
    try:
        listener.bind(("127.0.0.1", local))
    except OSError as exc:
        fail(f"cannot bind listener: {exc.strerror}")
    listener.listen(16)
    local = listener.getsockname()[1]
    child = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(listener.fileno()), str(local), str(remote)],
        pass_fds=[listener.fileno()],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    record = {"serial": device, "local": local, "remote": remote, "pid": child.pid}
    (state_dir() / f"forward-{local}.json").write_text(json.dumps(record))
    if args[0] == "tcp:0":
        print(local)


class Stop(Exception):
    """SIGTERM: stop accepting connections."""


def pump(source: socket.socket, sink: socket.socket) -> None:
    try:
        while True:
            data = source.recv(65536)
            if not data:
                break
            sink.sendall(data)
    except OSError:
        pass
    try:
        sink.shutdown(socket.SHUT_WR)
    except OSError:
        pass


def carry(client: socket.socket, remote: int) -> None:
    """One forwarded connection: like adb, close it at once if nothing listens on the device port."""
    try:
        upstream = socket.create_connection(("127.0.0.1", remote), timeout=5)
        upstream.settimeout(None)
    except OSError:
        client.close()
        return
    back = threading.Thread(target=pump, args=(upstream, client))
    back.start()
    pump(client, upstream)
    back.join()
    client.close()
    upstream.close()


def serve(fd: int, local: int, remote: int) -> None:
    listener = socket.socket(fileno=fd)

    def on_term(signum, frame):
        raise Stop()

    signal.signal(signal.SIGTERM, on_term)
    log = state_dir() / "connections.log"
    try:
        while True:
            client, _ = listener.accept()
            with log.open("a") as handle:
                handle.write(f"{local} {remote}\n")
            threading.Thread(target=carry, args=(client, remote)).start()
    except Stop:
        pass
    finally:
        listener.close()
    # non-daemon threads keep the process alive until the connections already made are finished


def shell(serial: str | None, args: list) -> None:
    """Like adb (shell protocol v2): the words joined by spaces are run by the device's sh."""
    pick_device(serial)
    if not args:
        fail("interactive shells are not supported here")
    env = dict(os.environ)
    if os.environ.get("FAKE_ADB_HOME"):
        env["HOME"] = os.environ["FAKE_ADB_HOME"]
        env.pop("XDG_CONFIG_HOME", None)
    sys.exit(subprocess.run(["sh", "-c", " ".join(args)], env=env, stdin=subprocess.DEVNULL).returncode)


def main(argv: list) -> None:
    if argv[:1] == ["--serve"]:
        serve(int(argv[1]), int(argv[2]), int(argv[3]))
        return
    serial = None
    while argv and argv[0].startswith("-"):
        if argv[0] == "-s":
            serial, argv = argv[1], argv[2:]
        else:
            fail(f"unknown option {argv[0]}")
    if not argv:
        fail("no command")
    command, args = argv[0], argv[1:]
    if command == "devices":
        print("List of devices attached")
        for serial_number, state in devices().items():
            print(f"{serial_number}\t{state}")
        print()
    elif command == "forward":
        forward(serial, args)
    elif command == "shell":
        shell(serial, args)
    elif command in ("start-server", "kill-server"):
        pass
    elif command == "version":
        print("Android Debug Bridge version 1.0.41 (rpyc_ikernel test fake)")
    else:
        fail(f"unknown command {command}")


if __name__ == "__main__":
    main(sys.argv[1:])
