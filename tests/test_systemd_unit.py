"""server.py --systemd-unit prints a unit whose ExecStart really starts this server (README)."""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys

import pytest
from helpers import REPO, BoardServer, free_port, wait_for_port

SERVER = REPO / "rpyc_ikernel" / "server.py"


def unit_for(*options: str, cwd=None) -> dict:
    """The unit printed for `python3 server.py OPTIONS --systemd-unit`, as {key: value} plus the text."""
    text = subprocess.run(
        [sys.executable, str(SERVER), *options, "--systemd-unit"],
        capture_output=True,
        text=True,
        check=True,
        cwd=cwd,
    ).stdout
    fields = dict(
        line.split("=", 1) for line in text.splitlines() if "=" in line and not line.startswith("#")
    )
    return {**fields, "text": text}


def test_unit_runs_this_python_and_file_with_the_options_given(tmp_path):
    unit = unit_for("--host", "127.0.0.1", "--port", "18812", cwd=tmp_path)
    assert shlex.split(unit["ExecStart"]) == [
        sys.executable,
        str(SERVER),
        "--host",
        "127.0.0.1",
        "--port",
        "18812",
    ]
    assert unit["WorkingDirectory"] == str(tmp_path)
    assert unit["WantedBy"] == "multi-user.target"
    assert "systemctl enable --now rpyc-ikernel" in unit["text"]


def test_a_token_given_on_the_command_line_stays_out_of_the_unit():
    unit = unit_for("--token", "not-in-the-unit", "--port", "18812")
    assert "not-in-the-unit" not in unit["text"]
    assert "--token" not in unit["ExecStart"]
    assert "token file" in unit["text"]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze here")
def test_systemd_accepts_the_unit(tmp_path):
    path = tmp_path / "rpyc-ikernel.service"
    path.write_text(unit_for("--host", "127.0.0.1")["text"])
    result = subprocess.run(["systemd-analyze", "verify", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_exec_start_starts_the_server(tmp_path):
    port = free_port()
    unit = unit_for("--host", "127.0.0.1", "--port", str(port), "--token-file", str(tmp_path / "token"))
    process = subprocess.Popen(
        shlex.split(unit["ExecStart"]),
        cwd=unit["WorkingDirectory"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    server = BoardServer(process, port, tmp_path / "unused.log")
    try:
        wait_for_port(port)
        assert (tmp_path / "token").exists()
    finally:
        server.stop()
