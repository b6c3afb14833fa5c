"""Safe by default: token challenge-response, TLS, and clear errors when they do not match."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import KernelSession, start_board
from hostile_board import RelayingBoard
from proxy import Proxy

SERVER = [sys.executable, "-m", "rpyc_ikernel.server", "--host", "127.0.0.1"]


def token_file() -> Path:
    return Path(os.environ["XDG_CONFIG_HOME"], "rpyc_ikernel", "token")


def test_default_server_creates_a_private_token_and_local_kernels_use_it(board, kernel):
    path = token_file()
    assert path.is_file()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert kernel.run("1 + 1").result == {"text/plain": "2"}
    status = kernel.run("# exec(print(self.board.security))").stream()
    assert status.startswith("token")


def test_token_never_crosses_the_wire(kernelspec_prefix, tmp_path):
    secret = "s3cret-token-that-must-not-leak"
    server = start_board(command=SERVER, env=dict(os.environ, RPYC_IKERNEL_TOKEN=secret))
    proxy = Proxy(server.port)
    session = KernelSession.start(
        board_port=proxy.port,
        env={"RPYC_IKERNEL_TOKEN": secret, "RPYC_IKERNEL_FORWARD": f"127.0.0.1:{server.port}"},
    )
    try:
        assert session.run("'authenticated'").result == {"text/plain": "'authenticated'"}
        assert secret.encode() not in bytes(proxy.sent_by_client)
        assert len(proxy.sent_by_client) > 0
    finally:
        session.stop()
        proxy.close()
        server.stop()


def test_wrong_token_runs_no_code(kernelspec_prefix, tmp_path):
    marker = tmp_path / "ran"
    server = start_board(command=SERVER, env=dict(os.environ, RPYC_IKERNEL_TOKEN="right-token-of-this-board"))
    session = KernelSession.start(board_port=server.port, env={"RPYC_IKERNEL_TOKEN": "wrong"})
    try:
        cell = session.run(f"open({str(marker)!r}, 'w').write('x')")
        assert cell.reply["ename"] == "BoardAuthError"
        assert "refused the token given" in cell.reply["evalue"]
        assert not marker.exists()
    finally:
        session.stop()
        server.stop()


def test_missing_token_is_a_clear_error(kernelspec_prefix, tmp_path):
    server = start_board(command=[*SERVER, "--token-file", str(tmp_path / "board-token")])
    # the kernel's own config dir has no token for this board
    session = KernelSession.start(board_port=server.port, env={"XDG_CONFIG_HOME": str(tmp_path / "empty")})
    try:
        cell = session.run("1")
        assert cell.reply["ename"] == "BoardAuthError"
        assert "requires a token" in cell.reply["evalue"]
        token = (tmp_path / "board-token").read_text().strip()
        connect = session.run(
            f'# exec(self.connect_remote("127.0.0.1", port={server.port}, token={token!r}))\n2'
        )
        assert connect.result == {"text/plain": "2"}
    finally:
        session.stop()
        server.stop()


def test_no_auth_warns_and_accepts_anyone(kernelspec_prefix, tmp_path):
    server = start_board(command=[*SERVER, "--no-auth"])
    session = KernelSession.start(board_port=server.port, env={"XDG_CONFIG_HOME": str(tmp_path / "empty")})
    try:
        assert session.run("3").result == {"text/plain": "3"}
        assert "WARNING: --no-auth" in server.output()
        assert session.run("# exec(print(self.board.security))").stream().startswith("no authentication")
    finally:
        session.stop()
        server.stop()


@pytest.fixture(scope="module")
def certificates(tmp_path_factory) -> dict:
    """A CA, a board certificate for 127.0.0.1 signed by it, and an unrelated self-signed one."""
    directory = tmp_path_factory.mktemp("certs")

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=directory, check=True, capture_output=True)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
            "-days", "2", "-subj", "/CN=rpyc_ikernel test CA")  # fmt: skip
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "board.key", "-out", "board.csr",
            "-subj", "/CN=127.0.0.1")  # fmt: skip
    (directory / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    openssl("x509", "-req", "-in", "board.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", "board.pem", "-days", "2", "-extfile", "san.ext")  # fmt: skip
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "other.key", "-out", "other.pem",
            "-days", "2", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1")  # fmt: skip
    # a hostile board with a certificate of its own from the same CA (it passes the kernel's check)
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "relay.key", "-out", "relay.csr",
            "-subj", "/CN=127.0.0.1")  # fmt: skip
    openssl("x509", "-req", "-in", "relay.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", "relay.pem", "-days", "2", "-extfile", "san.ext")  # fmt: skip
    names = ("ca.pem", "board.pem", "board.key", "other.pem", "relay.pem", "relay.key")
    return {name: str(directory / name) for name in names}


@pytest.fixture()
def tls_board(certificates):
    server = start_board(command=[*SERVER, "--certfile", certificates["board.pem"], "--keyfile",
                                  certificates["board.key"]])  # fmt: skip
    yield server
    server.stop()


def test_tls_with_the_right_ca_works_end_to_end(kernelspec_prefix, tls_board, certificates):
    proxy = Proxy(tls_board.port)
    session = KernelSession.start(
        board_port=proxy.port,
        env={
            "RPYC_IKERNEL_CA": certificates["ca.pem"],
            "RPYC_IKERNEL_FORWARD": f"127.0.0.1:{tls_board.port}",
        },
    )
    try:
        cell = session.run("print('over tls')\n'secret-output'")
        assert cell.stream() == "over tls\n"
        assert "TLS (certificate verified)" in session.run("# exec(print(self.board.security))").stream()
        status = dict(
            line.split(None, 1) for line in session.run("# exec(self.status())").stream().splitlines()
        )
        assert status["auth"] == "token (challenge-response)"
        assert status["tls"] == "on (certificate verified)"
        assert b"secret-output" not in bytes(proxy.sent_by_client)
        assert b"print('over tls')" not in bytes(proxy.sent_by_client)  # the code is encrypted too
    finally:
        session.stop()
        proxy.close()


def test_tls_with_an_untrusted_certificate_is_refused(kernelspec_prefix, tls_board, certificates):
    session = KernelSession.start(
        board_port=tls_board.port, env={"RPYC_IKERNEL_CA": certificates["other.pem"]}
    )
    try:
        cell = session.run("1")
        assert cell.reply["ename"] == "BoardAuthError"
        assert "certificate we do not trust" in cell.reply["evalue"]
    finally:
        session.stop()


def test_tls_client_against_a_plain_board_is_a_clear_error(kernelspec_prefix, certificates):
    board = start_board(command=[*SERVER, "--no-tls"])  # the default server has TLS (its own certificate)
    session = KernelSession.start(board_port=board.port, env={"RPYC_IKERNEL_CA": certificates["ca.pem"]})
    try:
        cell = session.run("1")
        assert cell.reply["ename"] == "BoardUnreachable"
        assert "TLS handshake" in cell.reply["evalue"]
    finally:
        session.stop()
        board.stop()


def test_token_is_printed_at_first_start_only(tmp_path):
    path = tmp_path / "token"
    first = start_board(command=[*SERVER, "--token-file", str(path)])
    first.stop()
    token = path.read_text().strip()
    assert len(token) >= 24
    assert token in first.output()
    second = start_board(command=[*SERVER, "--token-file", str(path)])
    second.stop()
    assert token not in second.output()
    assert str(path) in second.output()


def test_board_hmac_matches_the_standard_library():
    import hmac
    import os as _os

    from rpyc_ikernel.server import hmac_sha256

    for size in (0, 1, 32, 64, 65, 200):
        key = _os.urandom(size)
        message = _os.urandom(size * 3 + 1)
        assert hmac_sha256(key, message) == hmac.new(key, message, "sha256").hexdigest()


# --------------------------------------------------------------------------- relay (issue 13.1)


def test_a_relaying_board_cannot_reuse_the_kernels_proof_over_tls(kernelspec_prefix, certificates, tmp_path):
    """A hostile board with a certificate the kernel trusts relays the handshake to the real board.

    The proofs are bound to the board certificate each end sees (tls-server-end-point), so the real
    board refuses the relayed proof and the hostile board never gets a link that runs code.
    """
    import ssl

    token = "relay-test-token"
    server = start_board(command=[*SERVER, "--certfile", certificates["board.pem"],
                                  "--keyfile", certificates["board.key"]],
                         env=dict(os.environ, RPYC_IKERNEL_TOKEN=token))  # fmt: skip
    kernel_side = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    kernel_side.load_cert_chain(certificates["relay.pem"], certificates["relay.key"])
    board_side = ssl.create_default_context(cafile=certificates["ca.pem"])
    marker = tmp_path / "relayed"
    relay = RelayingBoard(server.port, str(marker), kernel_side_tls=kernel_side, board_side_tls=board_side)
    session = KernelSession.start(
        board_port=relay.port, env={"RPYC_IKERNEL_TOKEN": token, "RPYC_IKERNEL_CA": certificates["ca.pem"]}
    )
    try:
        cell = session.run("1")
        assert relay.wait_finished()
        assert relay.hijacked == 0, relay.log
        assert not marker.exists()
        assert cell.status == "error", relay.log
        assert cell.reply["ename"] == "BoardAuthError", (cell.reply["evalue"], relay.log)
    finally:
        session.stop()
        relay.close()
        server.stop()


def test_the_local_token_file_is_not_offered_to_a_board_elsewhere(kernelspec_prefix, tmp_path):
    """A kernel given no token dials a hostile board on a non-loopback address (in a network namespace
    of its own), which relays to this machine's board server: the token file must not be used there."""
    import json
    import shutil

    if os.geteuid() != 0 or shutil.which("unshare") is None or shutil.which("ip") is None:
        pytest.skip("needs root, unshare and ip for a private network namespace")
    script = Path(__file__).with_name("netns_relay.py")
    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "config")}
    done = subprocess.run(
        ["unshare", "-n", sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=90
    )
    assert done.returncode == 0, done.stderr[-3000:]
    outcome = json.loads(done.stdout.strip().splitlines()[-1])
    assert outcome["relay_attempts"] >= 1
    assert outcome["hijacked"] == 0, outcome
    assert not outcome["marker"]
    assert outcome["ename"] == "BoardAuthError"
    assert "requires a token" in outcome["evalue"]


# --------------------------------------------------------------------------- relay and squatting (issue 20.1)


@pytest.mark.parametrize("token_from", ["given", "token file"])
def test_a_squatter_on_loopback_cannot_relay_the_kernels_proof_without_tls(
    kernelspec_prefix, tmp_path, token_from
):
    """A process of the test's own listens on a loopback port the kernel dials and relays every byte of
    the handshake to the real server on another port, then tries to run code with the link.

    The kernel's proof names the endpoint it dialled (loopback:<relay port>); the server is at
    loopback:<its port>, so it refuses the relayed proof and the relay runs nothing."""
    token = "relay-test-token-0123456789"
    if token_from == "given":
        server = start_board(command=SERVER, env=dict(os.environ, RPYC_IKERNEL_TOKEN=token))
        env = {"RPYC_IKERNEL_TOKEN": token}
    else:  # the default: this machine's token file, offered to loopback boards
        server = start_board(command=SERVER)
        env = {}
    marker = tmp_path / "relayed"
    relay = RelayingBoard(server.port, str(marker))
    session = KernelSession.start(board_port=relay.port, env=env)
    try:
        cell = session.run("1")
        assert relay.wait_finished()
        assert relay.hijacked == 0, relay.log
        assert not marker.exists()
        assert cell.status == "error", relay.log
        assert cell.reply["ename"] == "BoardAuthError"
        evalue = cell.reply["evalue"]
        assert (
            "relayed" in evalue and f"loopback:{relay.port}" in evalue and f"loopback:{server.port}" in evalue
        )
        assert "\n" not in evalue
    finally:
        session.stop()
        relay.close()
        server.stop()


def test_a_forward_the_user_names_is_accepted_and_binds_the_proof(kernelspec_prefix, tmp_path):
    """An ssh -L style forward (a plain byte proxy): refused as a relay until the user names its far end
    with forward=; then it works, and a wrong forward= is refused again."""
    server = start_board(command=SERVER)
    proxy = Proxy(server.port)
    session = KernelSession.start(board_port=proxy.port)
    try:
        assert "relayed" in session.run("1").reply["evalue"]
        forward = f"localhost:{server.port}"
        named = session.run(
            f'# exec(self.connect_remote("127.0.0.1", port={proxy.port}, forward="{forward}"))\n3'
        )
        assert named.result == {"text/plain": "3"}, named.reply
        wrong = session.run(
            f'# exec(self.connect_remote("127.0.0.1", port={proxy.port}, forward="localhost:{proxy.port}"))'
        )
        assert wrong.reply["ename"] == "BoardAuthError" and "relayed" in wrong.reply["evalue"]
        bad = session.run(f'# exec(self.connect_remote("127.0.0.1", port={proxy.port}, forward="nonsense"))')
        assert bad.status == "error" and "HOST:PORT" in bad.reply["evalue"]
    finally:
        session.stop()
        proxy.close()
        server.stop()


def test_a_squatter_answering_as_an_open_board_gets_no_cells_on_a_port_our_server_claimed(
    kernelspec_prefix, tmp_path
):
    """Our token-checking server dies (SIGKILL: a crash); a squatter takes its port and answers like an
    open rpyc server. The kernel (no token given, so it would use this machine's token file) refuses it."""
    import signal as signals

    from helpers import PLAIN_BOARD

    from rpyc_ikernel.server import port_claim_path

    server = start_board(command=SERVER)
    port = server.port
    claim = Path(port_claim_path(port))
    assert claim.is_file() and stat.S_IMODE(claim.stat().st_mode) == 0o600
    server.process.send_signal(signals.SIGKILL)
    server.process.wait(10)
    plain_env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    squatter = start_board(command=[sys.executable, str(PLAIN_BOARD)], port=port, cwd=tmp_path, env=plain_env)
    session = KernelSession.start(board_port=port)
    marker = tmp_path / "squatted"
    try:
        cell = session.run(f"open({str(marker)!r}, 'w').write('x')")
        assert cell.reply["ename"] == "BoardAuthError", cell.reply
        assert "checks no token" in cell.reply["evalue"] and str(claim) in cell.reply["evalue"]
        assert not marker.exists()
        allowed = session.run(f'# exec(self.connect_remote("127.0.0.1", port={port}, allow_open=True))\n4')
        assert allowed.result == {"text/plain": "4"}  # the user can still say the open board is theirs
    finally:
        session.stop()
        squatter.stop()
        claim.unlink(missing_ok=True)


def test_a_stopped_server_releases_its_port_claim(tmp_path):
    """SIGTERM (kill, systemd stop): the claim goes, so an open board started there later just works."""
    from rpyc_ikernel.server import port_claim_path

    server = start_board(command=SERVER)
    claim = Path(port_claim_path(server.port))
    assert claim.is_file()
    server.stop()
    assert server.process.returncode == -15
    assert not claim.exists()


# ----------------------------------------------------------------------- TLS by default (issue 20.8, 21.6)


def start_line(server, timeout: float = 10) -> str:
    """The server's "listening on" line (printed just after the port opens: wait for it)."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        lines = [line for line in server.output().splitlines() if "listening on" in line]
        if lines:
            return lines[0]
        time.sleep(0.05)
    raise AssertionError(server.output())


def pairing_string(server) -> str:
    """The TOKEN@sha256:FINGERPRINT line a board server prints at first start."""
    lines = [line.strip() for line in server.output().splitlines() if "@sha256:" in line]
    assert lines, server.output()
    return lines[0]


def test_a_new_server_makes_a_certificate_and_a_paired_kernel_gets_an_encrypted_pinned_link(
    kernelspec_prefix, tmp_path
):
    config = tmp_path / "config"
    server = start_board(command=SERVER, env=dict(os.environ, XDG_CONFIG_HOME=str(config)))
    proxy = Proxy(server.port)
    pairing = pairing_string(server)
    token, _, fingerprint = pairing.partition("@sha256:")
    assert token == (config / "rpyc_ikernel" / "token").read_text().strip()
    key = config / "rpyc_ikernel" / "tls" / "board.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    shown = subprocess.run(
        ["openssl", "x509", "-in", str(key.with_name("board.pem")), "-noout", "-fingerprint", "-sha256"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert shown.split("=", 1)[1].strip().replace(":", "").lower() == fingerprint
    assert "TLS for paired kernels" in start_line(server)
    env = {"RPYC_IKERNEL_TOKEN": pairing, "RPYC_IKERNEL_FORWARD": f"127.0.0.1:{server.port}"}
    session = KernelSession.start(board_port=proxy.port, env=env)
    try:
        cell = session.run("print('plain' + 'text-marker')\n'secret-' + 'result'")
        assert cell.stream() == "plaintext-marker\n", cell.reply
        assert cell.result == {"text/plain": "'secret-result'"}
        security = session.run("# exec(print(self.board.security))").stream()
        assert "TLS (certificate pinned" in security, security
        assert b"plaintext-marker" not in bytes(proxy.sent_by_client) and b"'plain' +" not in bytes(
            proxy.sent_by_client
        )
        assert bytes(proxy.sent_by_client)[:1] == b"\x16"  # a TLS record, from the first byte
    finally:
        session.stop()
        proxy.close()
    # a kernel given the token alone still connects, in the clear (token-only mode)
    session = KernelSession.start(board_port=server.port, env={"RPYC_IKERNEL_TOKEN": token})
    try:
        assert session.run("5").result == {"text/plain": "5"}
        assert "TLS" not in session.run("# exec(print(self.board.security))").stream()
    finally:
        session.stop()
        server.stop()


def test_a_kernel_refuses_a_board_whose_certificate_is_not_the_paired_one(kernelspec_prefix, tmp_path):
    server = start_board(command=SERVER, env=dict(os.environ, XDG_CONFIG_HOME=str(tmp_path / "config")))
    token, _, fingerprint = pairing_string(server).partition("@sha256:")
    other = ("0" if fingerprint[0] != "0" else "1") + fingerprint[1:]
    marker = tmp_path / "ran"
    session = KernelSession.start(
        board_port=server.port, env={"RPYC_IKERNEL_TOKEN": f"{token}@sha256:{other}"}
    )
    try:
        cell = session.run(f"open({str(marker)!r}, 'w').write('x')")
        assert cell.reply["ename"] == "BoardAuthError"
        assert f"not the paired sha256:{other}" in cell.reply["evalue"]
        assert not marker.exists()
    finally:
        session.stop()
        server.stop()


def test_without_openssl_or_with_no_tls_the_server_says_so_in_one_line_and_serves_token_only(
    kernelspec_prefix, tmp_path
):
    env = dict(os.environ, XDG_CONFIG_HOME=str(tmp_path / "config"), PATH=str(tmp_path / "empty-bin"))
    server = start_board(command=SERVER, env=env)
    try:
        output = server.output()
        assert "no TLS (no openssl command to make a certificate)" in output, output
        assert "no TLS" in start_line(server)
        assert not (tmp_path / "config" / "rpyc_ikernel" / "tls" / "board.pem").exists()
        token = (tmp_path / "config" / "rpyc_ikernel" / "token").read_text().strip()
        session = KernelSession.start(board_port=server.port, env={"RPYC_IKERNEL_TOKEN": token})
        try:
            assert session.run("6").result == {"text/plain": "6"}
        finally:
            session.stop()
    finally:
        server.stop()
    quiet = start_board(
        command=[*SERVER, "--no-tls"], env=dict(os.environ, XDG_CONFIG_HOME=str(tmp_path / "c2"))
    )
    try:
        assert "@sha256:" not in quiet.output() and not (tmp_path / "c2" / "rpyc_ikernel" / "tls").exists()
    finally:
        quiet.stop()


def test_a_certificate_for_other_names_says_which_names_it_has(kernelspec_prefix, certificates, tmp_path):
    directory = Path(certificates["ca.pem"]).parent

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=tmp_path, check=True, capture_output=True)

    openssl(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "named.key",
        "-out",
        "named.csr",
        "-subj",
        "/CN=board.example",
    )
    (tmp_path / "named.ext").write_text("subjectAltName=DNS:board.example,DNS:pi.local\n")
    ca, ca_key = str(directory / "ca.pem"), str(directory / "ca.key")
    openssl("x509", "-req", "-in", "named.csr", "-CA", ca, "-CAkey", ca_key,
            "-CAcreateserial", "-out", "named.pem", "-days", "2", "-extfile", "named.ext")  # fmt: skip
    server = start_board(
        command=[*SERVER, "--certfile", str(tmp_path / "named.pem"), "--keyfile", str(tmp_path / "named.key")]
    )
    session = KernelSession.start(board_port=server.port, env={"RPYC_IKERNEL_CA": certificates["ca.pem"]})
    try:
        assert "TLS required" in start_line(server)
        cell = session.run("1")
        evalue = cell.reply["evalue"]
        assert cell.reply["ename"] == "BoardAuthError"
        assert "'board.example', 'pi.local'" in evalue and "not for '127.0.0.1'" in evalue, evalue
        assert "pass ca=" not in evalue
    finally:
        session.stop()
        server.stop()


def test_server_pairing_prints_the_pairing_string_that_install_takes_on_stdin(kernelspec_prefix, tmp_path):
    """`ssh board python3 server.py --pairing | python3 -m rpyc_ikernel.install --token -` (README, a first
    board): the one line on stdout is what the running server announces, and the kernelspec made from it
    gets a pinned TLS link."""
    env = dict(os.environ, XDG_CONFIG_HOME=str(tmp_path / "config"))
    server = start_board(command=SERVER, env=env)
    try:
        printed = subprocess.run(
            [*SERVER, "--pairing"], env=env, capture_output=True, text=True, timeout=60, check=True
        )
        assert printed.stdout.strip() == pairing_string(server)  # stdout holds the pairing string alone
        assert "token stored in" in printed.stderr
        prefix = tmp_path / "prefix"
        installed = subprocess.run(
            [
                sys.executable,
                "-m",
                "rpyc_ikernel.install",
                "--prefix",
                str(prefix),
                "--name",
                "paired",
                "--port",
                str(server.port),
                "--token",
                "-",
            ],
            input=printed.stdout,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert installed.returncode == 0, installed.stderr
        spec = json.loads((prefix / "share" / "jupyter" / "kernels" / "paired" / "kernel.json").read_text())
        assert spec["env"]["RPYC_IKERNEL_TOKEN"] == pairing_string(server)
        session = KernelSession.start(
            board_port=server.port, env={"RPYC_IKERNEL_TOKEN": spec["env"]["RPYC_IKERNEL_TOKEN"]}
        )
        try:
            assert session.run("6 * 7").result == {"text/plain": "42"}
            assert "TLS (certificate pinned" in session.run("# exec(print(self.board.security))").stream()
        finally:
            session.stop()
    finally:
        server.stop()


def test_servers_started_at_once_as_one_user_share_one_certificate(kernelspec_prefix, tmp_path):
    """Three servers making the certificate at the same moment (a unit and a terminal, test boards)
    end with one key and certificate that belong together, and all three offer TLS."""
    env = dict(os.environ, XDG_CONFIG_HOME=str(tmp_path / "config"))
    printed = [
        subprocess.Popen(
            [*SERVER, "--pairing"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(3)
    ]
    pairings = {process.communicate(timeout=120)[0].strip() for process in printed}
    assert len(pairings) == 1 and "@sha256:" in next(iter(pairings)), pairings
    tls = tmp_path / "config" / "rpyc_ikernel" / "tls"
    assert sorted(path.name for path in tls.parent.iterdir() if path.name.startswith("tls")) == ["tls"]
    check = subprocess.run(
        ["openssl", "x509", "-noout", "-pubkey", "-in", str(tls / "board.pem")],
        capture_output=True,
        check=True,
    ).stdout
    derived = subprocess.run(
        ["openssl", "pkey", "-pubout", "-in", str(tls / "board.key")], capture_output=True, check=True
    ).stdout
    assert check == derived  # the key is the certificate's
