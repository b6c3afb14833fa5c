"""Install, remove or list rpyc_ikernel kernelspecs: ``python3 -m rpyc_ikernel.install [options]``.

One kernelspec per board ("preset"): its env names the board, so picking a kernel picks the board.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

from . import settings
from .checks import host_name, port_number
from .server import TokenError, check_token, read_token_from_stdin

RESOURCES = Path(__file__).with_name("resources")
DEFAULT_NAME = "rpyc"
DEFAULT_DISPLAY_NAME = "Python (board via rpyc)"


def kernel_json(
    display_name: str,
    host: str | None,
    port: int | None,
    token: str | None = None,
    tls: bool = False,
    ca: str | None = None,
    adb_serial: str | None = None,
) -> dict:
    """The kernel.json for this Python; host/port (or adb), token and TLS become the kernel's default board.

    adb_serial None: a board on the network; "" : the only adb device; else that device's serial.
    """
    env = settings.environment(
        host=host or None,
        port=port,
        token=token or None,
        tls=bool(tls or ca),
        ca=os.path.abspath(ca) if ca else None,
        adb=adb_serial is not None,
        adb_serial=adb_serial or None,
    )
    spec = {
        "argv": [sys.executable, "-m", "rpyc_ikernel", "-f", "{connection_file}"],
        "display_name": display_name,
        "language": "python",
        "interrupt_mode": "signal",
        "metadata": {"debugger": True},
    }
    if env:
        spec["env"] = env
    return spec


def _in_virtualenv() -> bool:
    return sys.prefix != getattr(sys, "base_prefix", sys.prefix)


def _target(args: argparse.Namespace) -> dict:
    """KernelSpecManager keyword arguments for where to install (user / sys.prefix / prefix)."""
    if args.prefix:
        return {"prefix": os.path.abspath(args.prefix)}
    if args.sys_prefix or (not args.user and _in_virtualenv()):
        return {"prefix": sys.prefix}
    return {"user": True}


def _kernels_dir(target: dict) -> Path:
    if "prefix" in target:
        return Path(target["prefix"], "share", "jupyter", "kernels")
    return Path(KernelSpecManager().user_kernel_dir)


def _spec_dir(target: dict, name: str) -> Path:
    return _kernels_dir(target) / name


def install(args: argparse.Namespace) -> Path:
    """Write kernel.json and the logos, then let KernelSpecManager put them in place.

    A kernel.json with a token never exists with a mode others can read: KernelSpecManager installs
    the spec without it, then the spec with the token replaces it in one step from a 0600 file.
    """
    target = _target(args)
    spec = kernel_json(args.display_name, args.host, args.port, args.token, args.tls, args.ca, args.adb)
    public = dict(spec)
    if settings.TOKEN.name in spec.get("env", {}):
        public["env"] = {k: v for k, v in spec["env"].items() if k != settings.TOKEN.name}
    with tempfile.TemporaryDirectory() as tmp:
        spec_dir = Path(tmp, args.name)
        spec_dir.mkdir()
        (spec_dir / "kernel.json").write_text(json.dumps(public, indent=1) + "\n", encoding="utf-8")
        for logo in RESOURCES.glob("logo-*"):
            shutil.copy(logo, spec_dir / logo.name)
        destination = KernelSpecManager().install_kernel_spec(str(spec_dir), args.name, **target)
    if public != spec:
        _write_private(Path(destination, "kernel.json"), json.dumps(spec, indent=1) + "\n")
    return Path(destination)


class NotOurs(Exception):
    """The named kernelspec exists but does not start rpyc_ikernel: uninstall leaves it alone."""


def is_ours(spec: dict) -> bool:
    """Whether a kernelspec starts this kernel (its argv is `PYTHON -m rpyc_ikernel ...`)."""
    return spec.get("argv", [])[1:3] == ["-m", "rpyc_ikernel"]


def _write_private(path: Path, text: str) -> None:
    """Replace path by a file only its owner can read (0600 from its creation, whatever the umask)."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def uninstall(args: argparse.Namespace) -> Path:
    """Remove the named kernelspec from the chosen place (or wherever Jupyter finds it), if it is ours."""
    if args.prefix or args.user or args.sys_prefix:
        path = _spec_dir(_target(args), args.name)
    else:
        path = Path(KernelSpecManager().find_kernel_specs().get(args.name, ""))
    if not args.name or not (path / "kernel.json").is_file():
        raise NoSuchKernel(args.name)
    try:
        spec = json.loads((path / "kernel.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        spec = {}
    if not is_ours(spec):
        raise NotOurs(f"{' '.join(map(str, spec.get('argv', [])[:3])) or 'no readable kernel.json'}")
    shutil.rmtree(path)
    return path


def read_token_argument(value: str | None) -> tuple[str | None, str]:
    """--token's value and where it came from: "-" reads stdin (typed without echo on a terminal)."""
    if value != "-":
        return value, "given to --token"
    return read_token_from_stdin(), "read from stdin"


def presets(args: argparse.Namespace) -> list[dict]:
    """Installed kernelspecs that start rpyc_ikernel (in the chosen place, else all Jupyter sees)."""
    if args.prefix or args.user or args.sys_prefix:
        manager = KernelSpecManager(kernel_dirs=[str(_kernels_dir(_target(args)))])
    else:
        manager = KernelSpecManager()
    found = []
    for name, entry in sorted(manager.get_all_specs().items()):
        spec = entry["spec"]
        if not is_ours(spec):
            continue
        found.append(
            {
                "name": name,
                "display_name": spec.get("display_name", name),
                "board": describe_board(spec.get("env") or {}),
                "where": entry["resource_dir"],
            }
        )
    return found


def describe_board(env: dict) -> str:
    """What a kernelspec's env says about its board, for --list."""
    try:
        host, port = settings.HOST.read(env), settings.PORT.read(env)
        if settings.ADB.read(env):
            return f"adb {settings.ADB_SERIAL.read(env) or '(the only device)'}, port {port}"
    except settings.SettingError as exc:
        return str(exc)
    if not env.get(settings.HOST.name) and not env.get(settings.PORT.name):
        return f"default ({settings.HOST.name}, else {host}:{port})"
    return f"{host}:{port}"


def list_presets(args: argparse.Namespace) -> int:
    found = presets(args)
    if not found:
        print("No rpyc_ikernel kernelspecs found; install one with python3 -m rpyc_ikernel.install")
        return 0
    columns = [("NAME", "name"), ("DISPLAY NAME", "display_name"), ("BOARD", "board"), ("WHERE", "where")]
    widths = [max(len(title), *(len(row[key]) for row in found)) for title, key in columns]
    lines = [[title for title, _ in columns]] + [[row[key] for _, key in columns] for row in found]
    for line in lines:
        print("  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip())
    return 0


def _checked(check: Callable[[object, str], object], kind: str = "") -> Callable[[str], object]:
    """An argparse type from a checks function: its one-line message becomes argparse's error.

    With kind (e.g. "int"), text that is not of that kind starts with argparse's own words for it
    ("invalid int value: ..."), as with type=int before.
    """

    def parse(text: str) -> object:
        try:
            return check(text, "")  # argparse names the option
        except ValueError as exc:
            not_of_kind = kind == "int" and not text.strip().lstrip("-").isdigit()
            raise argparse.ArgumentTypeError(
                f"invalid {kind} value: {exc}" if not_of_kind else str(exc)
            ) from None

    return parse


def _has_name(argv: list[str]) -> bool:
    return any(arg == "--name" or arg.startswith("--name=") for arg in argv)


def discover_boards(args: argparse.Namespace, named: bool, token: str | None, source: str) -> int:
    """--discover: print the boards found; with --name, install a kernelspec for that board."""
    from .discovery import DiscoveryError, discover, table

    try:
        found = discover()
    except DiscoveryError as exc:
        print(exc, file=sys.stderr)
        return 1
    if not named:
        print(table(found))
        return 0
    try:
        board = found.find(args.name)
    except DiscoveryError as exc:
        print(f"Not installed: {exc}", file=sys.stderr)
        return 1
    if board is None:
        names = ", ".join(repr(b.name) for b in found.boards) or "none"
        print(f"No board announces the name {args.name!r} (found: {names}); see --discover", file=sys.stderr)
        return 1
    args.name = "".join(c if c.isalnum() or c in "._-" else "-" for c in board.name)
    if args.display_name == DEFAULT_DISPLAY_NAME:
        args.display_name = f"Python on {board.name} (board via rpyc)"
    args.host, args.port = board.address, board.port
    args.tls = args.tls or board.tls == "yes"
    try:
        args.token = None if token is None else check_token(token, source)
        path = install(args)
    except (TokenError, PermissionError) as exc:
        print(f"Not installed: {exc}", file=sys.stderr)
        return 1
    print(
        f"Installed kernelspec {args.name!r} for board {board.name!r}"
        f" at {board.address}:{board.port} in {path}"
    )
    if board.auth == "token" and not args.token:
        print(
            "This board asks for a token: add it with --token - (or set RPYC_IKERNEL_TOKEN)", file=sys.stderr
        )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python3 -m rpyc_ikernel.install",
        description="Install the rpyc_ikernel kernelspec: Jupyter kernels whose code runs on a board."
        " Install one per board (--name/--display-name/--host/--port or --adb) to pick boards by kernel.",
    )
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--user", action="store_true", help="install for this user (default outside a virtualenv)"
    )
    where.add_argument(
        "--sys-prefix",
        action="store_true",
        help="install into this Python's prefix (default inside a virtualenv)",
    )
    where.add_argument("--prefix", metavar="DIR", help="install into DIR/share/jupyter/kernels")
    parser.add_argument("--name", default=DEFAULT_NAME, help="kernelspec name (default %(default)s)")
    parser.add_argument("--display-name", default=DEFAULT_DISPLAY_NAME, help="name shown in Jupyter")
    parser.add_argument(
        "--host",
        type=_checked(host_name),
        help="default board address for this kernelspec (RPYC_IKERNEL_HOST)",
    )
    parser.add_argument(
        "--port",
        type=_checked(port_number, "int"),
        help="default board port for this kernelspec (RPYC_IKERNEL_PORT)",
    )
    parser.add_argument(
        "--token",
        metavar="TOKEN|-",
        help="the board's token (RPYC_IKERNEL_TOKEN); - reads it from stdin, which keeps it out of ps and"
        " the shell's history; kernel.json is then mode 0600",
    )
    parser.add_argument("--tls", action="store_true", help="connect with TLS (RPYC_IKERNEL_TLS)")
    parser.add_argument(
        "--ca", help="CA file that signed the board's certificate (RPYC_IKERNEL_CA); implies --tls"
    )
    parser.add_argument(
        "--adb",
        nargs="?",
        const="",
        metavar="SERIAL",
        help="the board is on USB: connect through `adb forward` (to the device SERIAL, or the only one);"
        " --port is then the board server's port on the device",
    )
    parser.add_argument(
        "--discover",
        action="store_true",
        help="list the boards that announce themselves on the network; with --name NAME, install a"
        " kernelspec named NAME for the board announced as NAME",
    )
    parser.add_argument("--uninstall", action="store_true", help="remove the kernelspec instead")
    parser.add_argument(
        "--list", action="store_true", help="list the installed rpyc_ikernel kernelspecs and their boards"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.host and args.adb is not None:
        parser.error("--host and --adb exclude each other: a board on USB is reached through adb")
    if args.list:
        return list_presets(args)
    token, source = read_token_argument(args.token)
    if args.token == "-" and not token:
        parser.error(
            '--token -: no token on stdin (echo "$TOKEN" | python3 -m rpyc_ikernel.install --token -)'
        )
    if args.discover:
        named = _has_name(sys.argv[1:] if argv is None else argv)
        return discover_boards(args, named, token, source)
    try:
        if args.uninstall:
            path = uninstall(args)
            print(f"Removed kernelspec {args.name!r} from {path}")
        else:
            # the board server's own rule: a token it would refuse is refused here, in its words
            args.token = None if token is None else check_token(token, source)
            path = install(args)
            print(f"Installed kernelspec {args.name!r} in {path}")
    except NoSuchKernel:
        print(
            f"No kernelspec named {args.name!r} is installed there; see `jupyter kernelspec list`",
            file=sys.stderr,
        )
        return 1
    except NotOurs as exc:
        print(
            f"Kernelspec {args.name!r} was not made by rpyc_ikernel (it runs {exc}), so it stays; remove it"
            f" with `jupyter kernelspec remove {args.name}` if you mean to",
            file=sys.stderr,
        )
        return 1
    except TokenError as exc:
        print(f"Not installed: {exc}", file=sys.stderr)
        return 1
    except PermissionError as exc:
        print(f"Cannot write {exc.filename}: permission denied; try --user or --sys-prefix", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
