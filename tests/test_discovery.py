"""Finding boards (issue 18): real board servers announce themselves with mDNS/DNS-SD in network
namespaces of the test's own (one bridge, tests/netns_lan.py); the browser and the kernel run in
another. Nothing multicasts on the host's interfaces: every server and browser runs in a namespace.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from helpers import REPO, stop_process
from netns_lan import Lan, why_not

pytestmark = pytest.mark.xdist_group("netns-discovery")

TOKEN = "discovery-test-token-0123456789"
BOARDS, BROWSER, ODD = 3, 3, 4  # members 0..2: pi-0..pi-2; 3: the kernel/browser; 4: the odd boards


class Member:
    """A process in a namespace, its output collected line by line."""

    def __init__(self, argv: list, env: dict) -> None:
        self.process = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=REPO
        )
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, text: str, timeout: float = 30) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = next((line for line in self.lines if text in line), None)
            if found:
                return found
            if self.process.poll() is not None and not self.process.stdout.readable():
                break
            time.sleep(0.05)
        raise AssertionError(f"no {text!r} in:\n" + "\n".join(self.lines[-30:]))

    def pid(self) -> int:
        return int(self.wait_for("listening on").split("(pid ")[1].split(")")[0])

    def stop(self) -> None:
        stop_process(self.process)


@pytest.fixture(scope="module")
def lan(tmp_path_factory):
    reason = why_not()
    if reason:
        pytest.skip(f"discovery tests need private network namespaces: {reason}")
    network = Lan(5)
    config = tmp_path_factory.mktemp("config")
    env = {**os.environ, "XDG_CONFIG_HOME": str(config), "PYTHONUNBUFFERED": "1"}
    server = [sys.executable, "-m", "rpyc_ikernel.server", "--host", "0.0.0.0"]
    members: dict[str, Member] = {}
    try:
        for i in range(BOARDS):
            auth = ["--no-auth"] if i == 2 else []
            members[f"pi-{i}"] = Member(
                network.command(i, server + ["--name", f"pi-{i}", *auth]),
                {**env, "RPYC_IKERNEL_TOKEN": TOKEN},
            )
        for i in range(BOARDS):
            members[f"pi-{i}"].wait_for("announced on the network as 'pi-")
        # a second board that wants pi-1's name, and a board announcing garbage on a closed port
        members["twin"] = Member(
            network.command(ODD, server + ["--name", "pi-1", "--port", "18813"]),
            {**env, "RPYC_IKERNEL_TOKEN": TOKEN},
        )
        members["junk"] = Member(
            network.command(ODD, [sys.executable, str(Path(__file__).with_name("garbage_board.py")), "junk"]),
            env,
        )
        members["twin"].wait_for("announced on the network")
        members["junk"].wait_for("announced on the network")
        network.members = members
        yield network
    finally:
        for member in members.values():
            member.stop()
        network.close()


def run_in(lan: Lan, member: int, argv: list, timeout: float = 60, env: dict | None = None):
    return subprocess.run(
        lan.command(member, argv), capture_output=True, text=True, timeout=timeout, cwd=REPO, env=env
    )


def test_discover_lists_every_board_with_its_details(lan):
    started = time.monotonic()
    done = run_in(lan, BROWSER, [sys.executable, "-m", "rpyc_ikernel.install", "--discover"])
    took = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    rows = {line.split()[0]: line.split() for line in done.stdout.splitlines() if line.strip()}
    assert rows["name"] == ["name", "address", "port", "auth", "TLS", "Python", "machine"]
    python = ".".join(map(str, sys.version_info[:3]))
    tls = "pair" if shutil.which("openssl") else "no"  # the server makes its own certificate with openssl
    assert rows["pi-0"] == ["pi-0", lan.address(0), "18812", "token", tls, python, os.uname().machine]
    assert rows["pi-1"][:4] == ["pi-1", lan.address(1), "18812", "token"]
    assert rows["pi-2"][:4] == ["pi-2", lan.address(2), "18812", "open"]
    # two boards, one name: the later one announces itself as pi-1-2, and says so in one line
    assert rows["pi-1-2"][:3] == ["pi-1-2", lan.address(ODD), "18813"]
    said = lan.members["twin"].wait_for("another board")
    assert "announces 'pi-1'; this one is 'pi-1-2'" in said
    # garbage TXT: still listed (address and port are sound), with one note line, nothing else lost
    assert rows["junk"][:7] == ["junk", lan.address(ODD), "9", "?", "?", "?", "?"]
    notes = [line for line in done.stdout.splitlines() if line.startswith("note:")]
    assert len(notes) == 1 and "'junk'" in notes[0] and "unreadable details" in notes[0], notes
    assert took < 30


def test_discover_with_a_name_installs_a_kernelspec_for_that_board(lan, tmp_path):
    done = run_in(
        lan,
        BROWSER,
        [
            sys.executable,
            "-m",
            "rpyc_ikernel.install",
            "--discover",
            "--name",
            "pi-2",
            "--prefix",
            str(tmp_path),
        ],
    )
    assert done.returncode == 0, done.stderr
    spec = json.loads((tmp_path / "share/jupyter/kernels/pi-2/kernel.json").read_text())
    assert spec["env"]["RPYC_IKERNEL_HOST"] == lan.address(2)
    assert spec["env"]["RPYC_IKERNEL_PORT"] == "18812"
    assert spec["display_name"] == "Python on pi-2 (board via rpyc)"

    missing = run_in(
        lan, BROWSER, [sys.executable, "-m", "rpyc_ikernel.install", "--discover", "--name", "nothing-here"]
    )
    assert missing.returncode == 1
    assert missing.stderr.strip().count("\n") == 0
    assert "No board announces the name 'nothing-here'" in missing.stderr


def test_a_kernel_finds_boards_by_name(lan, kernelspec_prefix):
    """In the browsing namespace: self.boards(), connect_remote("pi-2") and ("pi-0.local") reach those
    boards' processes; a name nobody announces and a board that refuses connections are one line."""
    pids = {name: lan.members[name].pid() for name in ("pi-0", "pi-2")}
    script = Path(__file__).with_name("netns_discovery_kernel.py")
    env = {**os.environ, "RPYC_IKERNEL_TOKEN": TOKEN}
    done = run_in(lan, BROWSER, [sys.executable, str(script)], timeout=240, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    cells = json.loads(done.stdout.strip().splitlines()[-1])
    assert cells["table"]["status"] == "ok"
    table = cells["table"]["stream"]
    for name in ("pi-0", "pi-1", "pi-2", "pi-1-2", "junk"):
        assert f"\n{name} " in table, table
    assert cells["by_name"]["result"] == str(pids["pi-2"]), cells["by_name"]
    assert cells["by_local"]["result"] == str(pids["pi-0"]), cells["by_local"]
    assert cells["nothing"]["status"] == "error"
    assert "no board named 'nothing-here' answered" in cells["nothing"]["evalue"]
    assert "\n" not in cells["nothing"]["evalue"]
    assert cells["refuses"]["status"] == "error"
    assert "\n" not in cells["refuses"]["evalue"].strip(), cells["refuses"]
    assert cells["still"]["result"] == str(pids["pi-0"]), cells  # the board before stays selected


HOSTILE_PACKETS = r"""
import random, socket, struct
random.seed(7)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(ADDRESS))
header = struct.pack("!6H", 0, 0, 1, 0, 0, 0)
packets = [b"", b"\x00", header, header + b"\xc0\x0c" + b"\x00\x0c\x00\x01",  # a name that points at itself
           header + b"\x3f" + b"a" * 10, struct.pack("!6H", 0, 0x8400, 0, 60000, 0, 0) + b"\x00",
           header + b"\x0d_rpyc-ikernel\x04_tcp\x05local"]  # cut before the end
packets += [bytes(random.getrandbits(8) for _ in range(random.randrange(1, 600))) for _ in range(300)]
for packet in packets:
    s.sendto(packet, ("224.0.0.251", 5353))
print(len(packets), "sent")
"""


def test_garbage_on_the_mdns_port_does_not_stop_the_boards(lan):
    """Malformed queries (self-referring names, cut packets, random bytes) are ignored; boards answer."""
    script = HOSTILE_PACKETS.replace("ADDRESS", repr(lan.address(BROWSER)))
    sent = run_in(lan, BROWSER, [sys.executable, "-c", script])
    assert sent.returncode == 0 and "sent" in sent.stdout, sent.stderr
    done = run_in(lan, BROWSER, [sys.executable, "-m", "rpyc_ikernel.install", "--discover"])
    names = {line.split()[0] for line in done.stdout.splitlines() if line.strip()}
    assert {"pi-0", "pi-1", "pi-2", "pi-1-2", "junk"} <= names, done.stdout
    for name in ("pi-0", "pi-1", "pi-2", "twin"):
        assert lan.members[name].process.poll() is None
        assert not any("Traceback" in line for line in lan.members[name].lines), lan.members[name].lines


def test_a_loopback_server_and_no_announce_stay_silent(lan):
    """A server on 127.0.0.1, and one given --no-announce, answer no query (seen from the same namespace)."""
    server = [sys.executable, "-m", "rpyc_ikernel.server", "--no-auth", "--port", "0"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    quiet = [
        Member(lan.command(BROWSER, server + ["--host", "127.0.0.1", "--name", "loop"]), env),
        Member(lan.command(BROWSER, server + ["--host", "0.0.0.0", "--no-announce", "--name", "hush"]), env),
    ]
    try:
        for member in quiet:
            member.pid()
        done = run_in(lan, BROWSER, [sys.executable, "-m", "rpyc_ikernel.install", "--discover"])
        assert done.returncode == 0, done.stderr
        names = {line.split()[0] for line in done.stdout.splitlines() if line.strip()}
        assert "pi-0" in names
        assert "loop" not in names and "hush" not in names
        assert not any("announced" in line for member in quiet for line in member.lines)
    finally:
        for member in quiet:
            member.stop()


def test_a_stopped_board_says_goodbye(lan):
    """A board that stops sends TTL 0 records: a browser that saw it drops it at once."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    server = [sys.executable, "-m", "rpyc_ikernel.server", "--no-auth", "--host", "0.0.0.0", "--port", "0"]
    brief = Member(lan.command(ODD, server + ["--name", "brief"]), env)
    try:
        brief.wait_for("announced on the network")
        watch = (
            "import time\n"
            "from zeroconf import ServiceBrowser, ServiceStateChange, Zeroconf\n"
            "seen = []\n"
            "def changed(zeroconf, service_type, name, state_change):\n"
            "    seen.append((name.split('.')[0], state_change.name))\n"
            "zc = Zeroconf()\n"
            "ServiceBrowser(zc, '_rpyc-ikernel._tcp.local.', handlers=[changed])\n"
            "time.sleep(2)\n"
            "print('ready', flush=True)\n"
            "time.sleep(4)\n"
            "print(sorted(set(seen)), flush=True)\n"
            "zc.close()\n"
        )
        watcher = Member(lan.command(BROWSER, [sys.executable, "-c", watch]), env)
        watcher.wait_for("ready")
        brief.stop()
        watcher.process.wait(30)
        time.sleep(0.2)
        assert "('brief', 'Removed')" in watcher.lines[-1], watcher.lines
        assert "('brief', 'Added')" in watcher.lines[-1]
    finally:
        brief.stop()


# --------------------------------------------------------------------------- no namespaces needed


def announcer_source() -> str:
    """The announcer's code, as server.load_announcer() runs it (a string in server.py)."""
    text = (REPO / "rpyc_ikernel" / "server.py").read_text()
    start = text.index("\nr'''\n", text.index("# >>> announcer")) + len("\nr'''\n")
    return text[start : text.index("'''  # <<< announcer")]


def test_the_announcer_source_is_board_code_and_lint_clean(tmp_path):
    """It is kept as text (a loopback server never compiles it), so check what ruff cannot see there:
    Python 3.7 syntax, the standard library only, and the project's lint rules."""
    import ast

    import rpyc_ikernel
    from rpyc_ikernel import server

    source = announcer_source()
    tree = ast.parse(source, feature_version=(3, 7))
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    assert imported <= {"fcntl", "select"}, imported
    names = set(vars(server))
    copy = tmp_path / "announcer.py"
    header = "from __future__ import annotations\n\nfrom server_names import *  # noqa: F403\n\n\n"
    copy.write_text(header + source)
    lint = subprocess.run(
        [
            str(Path(sys.executable).with_name("ruff")),
            "check",
            "--isolated",
            "--line-length",
            "110",
            "--select",
            "E,W,B,F",
            "--ignore",
            "F405,B904",
            str(copy),
        ],
        capture_output=True,
        text=True,
    )
    assert lint.returncode == 0, lint.stdout
    assert server.load_announcer() and {"Announcer", "board_txt"} <= set(vars(server)) - names
    assert server.SERVER_VERSION == rpyc_ikernel.__version__


def test_a_loopback_server_does_not_load_the_announcer(kernelspec_prefix):
    from helpers import KernelSession, start_board

    board = start_board()
    session = KernelSession.start(board_port=board.port)
    try:
        cell = session.run(
            "import sys\n[n in vars(sys.modules['__main__']) for n in ('Announcer', 'load_announcer')]"
        )
        assert cell.result == {"text/plain": "[False, True]"}, cell.error
    finally:
        session.stop()
        board.stop()


@pytest.mark.boards
@pytest.mark.parametrize("name", ["pyenv-3.7"])
def test_a_board_on_the_oldest_python_announces_itself(lan, tmp_path, name):
    """server.py copied alone, on Python 3.7 with its own rpyc (a test board, scripts/boards.py)."""
    sys.path.insert(0, str(REPO / "scripts"))
    import boards

    board = boards.board_named(name)
    if not board.built() or board.chroot:
        pytest.skip(f"board {name} is not built (make test-boards builds it)")
    copy = tmp_path / "server.py"
    copy.write_text((REPO / "rpyc_ikernel" / "server.py").read_text())
    argv = board.command(["python3", str(copy), "--host", "0.0.0.0", "--no-auth", "--name", "old-py"])
    member = Member(lan.command(ODD, argv), board.environment())
    try:
        member.wait_for("announced on the network as 'old-py'")
        done = run_in(lan, BROWSER, [sys.executable, "-m", "rpyc_ikernel.install", "--discover"])
        rows = {line.split()[0]: line.split() for line in done.stdout.splitlines() if line.strip()}
        assert rows["old-py"][:5] == ["old-py", lan.address(ODD), "18812", "open", "no"], done.stdout
        assert rows["old-py"][5].startswith("3.7."), done.stdout
    finally:
        member.stop()


AVAHI_STAND_IN = r"""
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as avahi-daemon binds 5353
s.bind(("", 5353))
group = socket.inet_aton("224.0.0.251") + socket.inet_aton(ADDRESS)
s.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, group)
print("bound", flush=True)
while True:
    data, peer = s.recvfrom(9000)
    if b"_rpyc-ikernel" in data and not data[2] & 0x80:
        print("query from", peer[0], flush=True)
"""


def test_the_board_shares_the_mdns_port_with_another_responder(lan):
    """Where avahi-daemon already holds port 5353 (SO_REUSEADDR), the board binds it too; both get the
    queries, and the board answers for its own records."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    member = ODD
    script = AVAHI_STAND_IN.replace("ADDRESS", repr(lan.address(member)))
    stand_in = Member(lan.command(member, [sys.executable, "-c", script]), env)
    beside = None
    try:
        stand_in.wait_for("bound")
        server = [
            sys.executable,
            "-m",
            "rpyc_ikernel.server",
            "--no-auth",
            "--host",
            "0.0.0.0",
            "--port",
            "0",
        ]
        beside = Member(lan.command(member, server + ["--name", "beside-avahi"]), env)
        beside.wait_for("announced on the network as 'beside-avahi'")
        done = run_in(lan, BROWSER, [sys.executable, "-m", "rpyc_ikernel.install", "--discover"])
        rows = {line.split()[0]: line.split() for line in done.stdout.splitlines() if line.strip()}
        assert rows["beside-avahi"][1] == lan.address(member), done.stdout
        stand_in.wait_for(f"query from {lan.address(BROWSER)}")
        assert stand_in.process.poll() is None
    finally:
        if beside is not None:
            beside.stop()
        stand_in.stop()


def test_announced_names_are_cleaned_and_one_name_at_two_addresses_is_an_error():
    from rpyc_ikernel.discovery import Discovery, DiscoveryError, FoundBoard, _clean_name

    assert _clean_name("pi-0") == "pi-0"
    assert _clean_name("Küche Pi") == "Küche Pi"
    assert _clean_name("x" * 63) == "x" * 63
    for bad in ("x" * 64, "", "pi\x1b[2J", "pi\nnote: fake", "pi\r", "pi\x07"):
        assert _clean_name(bad) is None, bad

    one = Discovery(boards=[FoundBoard("pi", "10.0.0.1", 18812, addresses=("10.0.0.1", "10.0.1.1"))])
    assert one.find("pi.local").address == "10.0.0.1"  # one host at two addresses: that host
    assert one.find("other") is None
    two = Discovery(boards=[FoundBoard("pi", "10.0.0.1", 18812), FoundBoard("Pi", "10.0.0.9", 18812)])
    with pytest.raises(DiscoveryError) as raised:
        two.find("pi")
    message = str(raised.value)
    assert "10.0.0.1:18812" in message and "10.0.0.9:18812" in message and "\n" not in message
