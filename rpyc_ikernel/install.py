"""Install or remove the ``rpyc`` kernelspec: ``python3 -m rpyc_ikernel.install [options]``."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

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
) -> dict:
    """The kernel.json for this Python; host/port/token/TLS become the kernel's default board."""
    env = {}
    if host:
        env["RPYC_IKERNEL_HOST"] = host
    if port is not None:
        env["RPYC_IKERNEL_PORT"] = str(port)
    if token:
        env["RPYC_IKERNEL_TOKEN"] = token
    if tls or ca:
        env["RPYC_IKERNEL_TLS"] = "1"
    if ca:
        env["RPYC_IKERNEL_CA"] = os.path.abspath(ca)
    spec = {
        "argv": [sys.executable, "-m", "rpyc_ikernel", "-f", "{connection_file}"],
        "display_name": display_name,
        "language": "python",
        "interrupt_mode": "signal",
        "metadata": {"debugger": False},
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


def _spec_dir(target: dict, name: str) -> Path:
    if "prefix" in target:
        return Path(target["prefix"], "share", "jupyter", "kernels", name)
    return Path(KernelSpecManager().user_kernel_dir, name)


def install(args: argparse.Namespace) -> Path:
    """Write kernel.json and the logos, then let KernelSpecManager put them in place."""
    target = _target(args)
    with tempfile.TemporaryDirectory() as tmp:
        spec_dir = Path(tmp, args.name)
        spec_dir.mkdir()
        spec = kernel_json(args.display_name, args.host, args.port, args.token, args.tls, args.ca)
        (spec_dir / "kernel.json").write_text(json.dumps(spec, indent=1) + "\n", encoding="utf-8")
        for logo in RESOURCES.glob("logo-*"):
            shutil.copy(logo, spec_dir / logo.name)
        destination = KernelSpecManager().install_kernel_spec(str(spec_dir), args.name, **target)
    if args.token:
        Path(destination, "kernel.json").chmod(0o600)  # it holds a secret
    return Path(destination)


def uninstall(args: argparse.Namespace) -> Path:
    """Remove the named kernelspec from the chosen place (or wherever Jupyter finds it)."""
    if args.prefix or args.user or args.sys_prefix:
        path = _spec_dir(_target(args), args.name)
        if not path.is_dir():
            raise NoSuchKernel(args.name)
        shutil.rmtree(path)
        return path
    return Path(KernelSpecManager().remove_kernel_spec(args.name))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python3 -m rpyc_ikernel.install",
        description="Install the rpyc_ikernel kernelspec: Jupyter kernels whose code runs on a board.",
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
    parser.add_argument("--host", help="default board address for this kernelspec (RPYC_IKERNEL_HOST)")
    parser.add_argument("--port", type=int, help="default board port for this kernelspec (RPYC_IKERNEL_PORT)")
    parser.add_argument(
        "--token", help="the board's token (RPYC_IKERNEL_TOKEN); kernel.json is then mode 0600"
    )
    parser.add_argument("--tls", action="store_true", help="connect with TLS (RPYC_IKERNEL_TLS)")
    parser.add_argument(
        "--ca", help="CA file that signed the board's certificate (RPYC_IKERNEL_CA); implies --tls"
    )
    parser.add_argument("--uninstall", action="store_true", help="remove the kernelspec instead")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.uninstall:
            path = uninstall(args)
            print(f"Removed kernelspec {args.name!r} from {path}")
        else:
            path = install(args)
            print(f"Installed kernelspec {args.name!r} in {path}")
    except NoSuchKernel:
        print(
            f"No kernelspec named {args.name!r} is installed there; see `jupyter kernelspec list`",
            file=sys.stderr,
        )
        return 1
    except PermissionError as exc:
        print(f"Cannot write {exc.filename}: permission denied; try --user or --sys-prefix", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
