"""Test boards on this machine: Debian root filesystems (armhf and arm64 under qemu-user) and pyenv Pythons.

Each board is a Python with some rpyc version, started as a separate process that listens on 127.0.0.1
only. Debian boards are made with ``debootstrap --foreign`` (download and unpack the base), then every
downloaded .deb is unpacked natively with ``dpkg-deb -x``: no maintainer scripts run under emulation,
so a board takes about a minute (mostly the download) instead of many. Their processes run in a chroot
inside a private mount namespace (so /proc is mounted for them and nothing leaks to the host), and
foreign-architecture binaries run through qemu-user-static's binfmt_misc handlers.

    python3 scripts/boards.py setup            # apt-get install debootstrap qemu-user-static, binfmt_misc
    python3 scripts/boards.py build [NAME...]  # build what is missing or out of date (cached)
    python3 scripts/boards.py list             # boards, their Python and rpyc, built or not
    python3 scripts/boards.py run NAME -- python3 -c 'import rpyc; print(rpyc.__version__)'

Built boards live under ``.boards/`` (gitignored; ``RPYC_IKERNEL_BOARDS_DIR`` moves it). A board is
rebuilt only when its recipe changes. Needs root (debootstrap, chroot, mount), like CI.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BOARDS_DIR = Path(os.environ.get("RPYC_IKERNEL_BOARDS_DIR") or REPO / ".boards")
PYENV = Path(os.environ.get("PYENV_ROOT") or "/root/.pyenv")
STAMP = "rpyc_ikernel_board.json"  # the recipe a board was built from; a different recipe rebuilds it
FACTS = "rpyc_ikernel_facts.json"  # Python, machine and rpyc version, as the board reported them
RECIPE_VERSION = 1
BOARD_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
BINFMT = Path("/proc/sys/fs/binfmt_misc")
QEMU_HANDLERS = {"armhf": "qemu-arm", "arm64": "qemu-aarch64"}
HOST_PACKAGES = ["debootstrap", "qemu-user-static", "binfmt-support", "dpkg"]


@dataclass(frozen=True)
class Board:
    """One board: where its Python comes from, which rpyc it has, and what it stands for."""

    name: str
    about: str
    suite: str = ""  # a Debian suite: a chroot board
    arch: str = ""  # its Debian architecture
    apt: tuple = ()  # Debian packages to include
    python: str = ""  # a pyenv version: a venv board on the host
    pip: tuple = ()  # requirements installed with pip (into the chroot with --target, or into the venv)
    python_version: str = ""  # X.Y, for pip --target into a chroot

    @property
    def chroot(self) -> bool:
        return bool(self.suite)

    @property
    def emulated(self) -> bool:
        return self.arch in QEMU_HANDLERS

    @property
    def root(self) -> Path:
        return BOARDS_DIR / self.name

    def recipe(self) -> dict:
        return json.loads(json.dumps({"version": RECIPE_VERSION, **asdict(self)}))

    def built(self) -> bool:
        try:
            return json.loads((self.root / STAMP).read_text()) == self.recipe()
        except (OSError, ValueError):
            return False

    def board_path(self, host_path: Path | str) -> str:
        """The path a board process sees for a file under this board's root (chroot) or the host path."""
        host_path = Path(host_path)
        if not self.chroot:
            return str(host_path)
        return "/" + str(host_path.relative_to(self.root))

    def host_path(self, board_path: str) -> Path:
        """Where a board's file (as the board names it) lives on the host."""
        return self.root / board_path.lstrip("/") if self.chroot else Path(board_path)

    @property
    def home(self) -> str:
        """The board user's home (HOME, and the working directory of board processes)."""
        return "/root" if self.chroot else str(self.root / "home")

    @property
    def python_exe(self) -> str:
        return "/usr/bin/python3" if self.chroot else str(self.root / "venv" / "bin" / "python")

    def command(self, argv: list[str]) -> list[str]:
        """argv run on this board: in its chroot (own mount namespace, /proc mounted), from its home."""
        if argv and argv[0] == "python3":
            argv = [self.python_exe, *argv[1:]]
        if not self.chroot:
            return argv
        # The host's sh mounts /proc and enters the chroot; the board's sh moves to HOME and runs argv.
        # unshare kills the board process when it dies, so stopping the unshare process stops the board.
        enter = 'exec chroot "$0" /bin/sh -c \'cd "$HOME" && exec "$@"\' sh "$@"'
        script = 'mount -t proc proc "$0/proc" && ' + enter
        return [
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "--fork",
            "--kill-child=SIGTERM",
            "--",
            "/bin/sh",
            "-c",
            script,
            str(self.root),
            *argv,
        ]

    def environment(self, extra: dict | None = None) -> dict:
        """A clean environment for board processes (nothing of the host's leaks into a chroot)."""
        env = {"PATH": BOARD_PATH, "HOME": self.home, "LANG": "C.UTF-8", "PYTHONUNBUFFERED": "1"}
        if not self.chroot:
            env["PATH"] = str(self.root / "venv" / "bin") + os.pathsep + BOARD_PATH
            env["XDG_CONFIG_HOME"] = str(Path(self.home) / ".config")
        env.update(extra or {})
        return env

    def popen(self, argv: list[str], env: dict | None = None, **kwargs) -> subprocess.Popen:
        """Start argv on the board in a process group of its own (see stop_process)."""
        kwargs.setdefault("cwd", None if self.chroot else self.home)
        return subprocess.Popen(
            self.command(argv), env=self.environment(env), start_new_session=True, **kwargs
        )

    def run(self, argv: list[str], env: dict | None = None, **kwargs) -> subprocess.CompletedProcess:
        kwargs.setdefault("cwd", None if self.chroot else self.home)
        return subprocess.run(self.command(argv), env=self.environment(env), **kwargs)

    def known_facts(self) -> dict:
        """The facts recorded when the board was built."""
        return json.loads((self.root / FACTS).read_text())

    def facts(self) -> dict:
        """Python version, machine and rpyc version, as the board reports them."""
        probe = (
            "import json, platform, sys, rpyc; v = rpyc.__version__\n"  # a tuple in rpyc 5.1
            "print(json.dumps({'python': platform.python_version(), 'machine': platform.machine(),"
            " 'rpyc': v if isinstance(v, str) else '.'.join(map(str, v)), 'executable': sys.executable}))"
        )
        out = self.run(["python3", "-c", probe], capture_output=True, text=True, check=True, timeout=120)
        return json.loads(out.stdout.strip().splitlines()[-1])


def stop_process(process: subprocess.Popen, timeout: float = 10.0) -> None:
    """Stop a board process started by Board.popen, and everything it started.

    The whole process group gets the signal: unshare ignores SIGTERM while it waits for its child.
    """
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if process.poll() is not None:
            return
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            continue


def board_pid(process: subprocess.Popen) -> int:
    """The pid of the board's own program (the child of unshare for a chroot board)."""
    try:
        children = Path(f"/proc/{process.pid}/task/{process.pid}/children").read_text().split()
    except OSError:
        children = []
    exe = os.readlink(f"/proc/{process.pid}/exe") if os.path.exists(f"/proc/{process.pid}/exe") else ""
    return int(children[0]) if children and exe.endswith("unshare") else process.pid


BOARDS = [
    Board(
        "bookworm-armhf",
        "Raspberry Pi OS-like: armv7, Debian's python3-rpyc (pip blocked by PEP 668)",
        suite="bookworm",
        arch="armhf",
        apt=("python3-rpyc",),
    ),
    Board(
        "trixie-arm64",
        "arm64 (Jetson/Pi 4-like), newest Debian Python and Debian's python3-rpyc",
        suite="trixie",
        arch="arm64",
        apt=("python3-rpyc",),
    ),
    Board(
        "bullseye-amd64",
        "an older Debian, rpyc from PyPI put in with pip --target",
        suite="bullseye",
        arch="amd64",
        apt=("python3",),
        pip=("rpyc==5.1.0",),
        python_version="3.9",
    ),
    Board(
        "pyenv-3.7",
        "the oldest Python we support, with the newest rpyc it can have, in a venv",
        python="3.7",
        pip=("rpyc==6.0.0",),
    ),
    Board("pyenv-3.8", "Python 3.8 with rpyc 5.2, in a venv", python="3.8", pip=("rpyc==5.2.3",)),
    Board(
        "pyenv-3.12",
        "Python 3.12 (the debugger's sys.monitoring path) with rpyc 6.0, in a venv",
        python="3.12",
        pip=("rpyc==6.0.2",),
    ),
]


# Not tested on: built on demand by benchmarks/board_memory.py, to weigh stock ipykernel on armv7.
EXTRA_BOARDS = [
    Board(
        "bookworm-armhf-ipykernel",
        "bookworm-armhf plus Debian's python3-ipykernel (stock ipykernel on armv7, for memory figures)",
        suite="bookworm",
        arch="armhf",
        apt=("python3-rpyc", "python3-ipykernel"),
    ),
]


def board_named(name: str) -> Board:
    for board in BOARDS + EXTRA_BOARDS:
        if board.name == name:
            return board
    names = ", ".join(b.name for b in BOARDS + EXTRA_BOARDS)
    raise SystemExit(f"no board named {name!r}; boards: {names}")


# ----------------------------------------------------------------------------- host set-up


def log(message: str) -> None:
    sys.stdout.write(f"[boards {time.strftime('%H:%M:%S')}] {message}\n")  # one write: builds run in threads
    sys.stdout.flush()


def missing_host_tools() -> list[str]:
    tools = {"debootstrap": "debootstrap", "qemu-arm-static": "qemu-user-static", "dpkg-deb": "dpkg"}
    tools["update-binfmts"] = "binfmt-support"
    return sorted({package for tool, package in tools.items() if shutil.which(tool) is None})


def setup_host() -> None:
    """Install the host tools if missing and make sure binfmt_misc runs armhf and arm64 binaries."""
    if missing_host_tools():
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        log("installing " + " ".join(HOST_PACKAGES))
        subprocess.run(["apt-get", "update", "-q"], check=True, env=env)
        subprocess.run(["apt-get", "install", "-y", "-q", *HOST_PACKAGES], check=True, env=env)
    if not (BINFMT / "status").exists():
        subprocess.run(["mount", "-t", "binfmt_misc", "binfmt_misc", str(BINFMT)], check=True)
    for handler in QEMU_HANDLERS.values():
        if handler_enabled(handler):
            continue
        if not (BINFMT / handler).exists():
            subprocess.run(["update-binfmts", "--import", handler], check=False)
        if not handler_enabled(handler):
            subprocess.run(["update-binfmts", "--enable", handler], check=False)
        if not handler_enabled(handler):
            raise SystemExit(f"binfmt_misc handler {handler} is not enabled: foreign boards cannot run")


def handler_enabled(handler: str) -> bool:
    try:
        return (BINFMT / handler).read_text().startswith("enabled")
    except OSError:
        return False


def debian_mirror() -> str:
    """The Debian mirror this machine's apt uses (RPYC_IKERNEL_BOARDS_MIRROR overrides it)."""
    if os.environ.get("RPYC_IKERNEL_BOARDS_MIRROR"):
        return os.environ["RPYC_IKERNEL_BOARDS_MIRROR"]
    texts = []
    for path in [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]:
        if path.suffix in (".list", ".sources") or path.name == "sources.list":
            try:
                texts.append(path.read_text())
            except OSError:
                pass
    for url in re.findall(r"(?:URIs:|^deb)\s+(\S+)", "\n".join(texts), re.MULTILINE):
        if url.rstrip("/").endswith("/debian"):
            return url
    raise SystemExit("no Debian mirror in /etc/apt sources; set RPYC_IKERNEL_BOARDS_MIRROR")


# ----------------------------------------------------------------------------- building


def build_chroot(board: Board, work: Path) -> None:
    include = ",".join(board.apt)
    command = ["debootstrap", "--foreign", "--variant=minbase", f"--arch={board.arch}"]
    command += [f"--include={include}"] if include else []
    command += [board.suite, str(work), debian_mirror()]
    with (work.parent / f"{board.name}.debootstrap.log").open("w") as out:
        result = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT)
    if result.returncode != 0:
        raise RuntimeError(f"debootstrap failed for {board.name}: see {out.name}")
    archives = work / "var" / "cache" / "apt" / "archives"
    for deb in sorted(archives.glob("*.deb")):  # the second stage, natively: files only, no scripts
        subprocess.run(["dpkg-deb", "-x", str(deb), str(work)], check=True)
        deb.unlink()
    shutil.rmtree(work / "debootstrap", ignore_errors=True)
    # What maintainer scripts would have made and a board's Python needs: users, a home, a hostname.
    base_passwd = work / "usr" / "share" / "base-passwd"
    for name in ("passwd", "group"):
        if not (work / "etc" / name).exists() and (base_passwd / f"{name}.master").exists():
            shutil.copy(base_passwd / f"{name}.master", work / "etc" / name)
    (work / "etc" / "hostname").write_text(f"{board.name}\n")
    (work / "root").mkdir(mode=0o700, exist_ok=True)
    (work / "proc").mkdir(exist_ok=True)
    if board.pip:  # pip on the host, for the board's Python version: no pip (or CA bundle) in the chroot
        target = work / "usr" / "local" / "lib" / f"python{board.python_version}" / "dist-packages"
        options = ["--target", str(target), "--python-version", board.python_version, "--only-binary=:all:"]
        pip_install(options, board)


def pip_install(options: list[str], board: Board, python: str | None = None) -> None:
    command = [python or sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    result = subprocess.run([*command, *options, *board.pip], capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"pip failed for {board.name}:\n{result.stdout}{result.stderr}")


def pyenv_python(version: str) -> Path:
    candidates = sorted(PYENV.glob(f"versions/{version}.*/bin/python{version}"))
    if not candidates:
        raise RuntimeError(f"no pyenv Python {version} under {PYENV}/versions")
    return candidates[-1]


def build_venv(board: Board, work: Path) -> None:
    python = pyenv_python(board.python)
    subprocess.run([str(python), "-m", "venv", str(work / "venv")], check=True)
    pip_install([], board, python=str(work / "venv" / "bin" / "python"))
    (work / "home").mkdir()


def build(board: Board, force: bool = False) -> float:
    """Build one board unless an up-to-date one exists; returns the seconds it took."""
    if board.built() and not force:
        log(f"{board.name}: up to date")
        return 0.0
    started = time.monotonic()
    BOARDS_DIR.mkdir(parents=True, exist_ok=True)
    work = BOARDS_DIR / f"{board.name}.building"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    log(f"{board.name}: building ({board.about})")
    (build_chroot if board.chroot else build_venv)(board, work)
    shutil.rmtree(board.root, ignore_errors=True)
    work.rename(board.root)
    (board.root / FACTS).write_text(json.dumps(board.facts(), indent=1))  # also warms up its imports
    (board.root / STAMP).write_text(json.dumps(board.recipe(), indent=1))  # complete: a cached board
    seconds = time.monotonic() - started
    log(f"{board.name}: built in {seconds:.0f} s")
    return seconds


def build_all(boards: list[Board], force: bool = False, jobs: int = 3) -> None:
    """Build boards side by side (downloads dominate), the host set up first."""
    setup_host()
    if (BOARDS_DIR.parent == REPO) and not (REPO / ".gitignore").read_text().count(".boards"):
        log("warning: .boards/ is not in .gitignore")
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        for future in [pool.submit(build, board, force) for board in boards]:
            future.result()


def describe(boards: list[Board]) -> None:
    for board in boards:
        if board.built():
            facts = board.known_facts()
            state = f"Python {facts['python']} {facts['machine']}, rpyc {facts['rpyc']}"
        else:
            state = "not built"
        print(f"{board.name:16} {state:40} {board.about}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    sub.add_parser("setup", help="install the host tools and enable binfmt_misc for armhf/arm64")
    build_parser = sub.add_parser("build", help="build boards (all by default); cached")
    build_parser.add_argument("names", nargs="*")
    build_parser.add_argument("--force", action="store_true", help="rebuild even if up to date")
    build_parser.add_argument("--jobs", type=int, default=3)
    list_parser = sub.add_parser("list", help="the boards and what they run")
    list_parser.add_argument("names", nargs="*")
    run_parser = sub.add_parser("run", help="run a command on a board (python3 = the board's Python)")
    run_parser.add_argument("name")
    run_parser.add_argument("argv", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    if args.what == "setup":
        setup_host()
    elif args.what == "build":
        build_all([board_named(n) for n in args.names] or BOARDS, args.force, args.jobs)
    elif args.what == "list":
        describe([board_named(n) for n in args.names] or BOARDS)
    else:
        board = board_named(args.name)
        if board.emulated:
            setup_host()
        argv = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
        return board.run(argv or ["python3"]).returncode
    return 0


if __name__ == "__main__":
    sys.exit(main())
