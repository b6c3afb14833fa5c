"""Kernelspec install/uninstall through the real command line, into temporary prefixes."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys


def run_install(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "rpyc_ikernel.install", *args], capture_output=True, text=True, env=env
    )


def kernelspecs(prefix) -> dict:
    env = dict(os.environ, JUPYTER_PATH=str(prefix / "share" / "jupyter"))
    listing = subprocess.run(
        [sys.executable, "-m", "jupyter_client.kernelspecapp", "list", "--json"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    specs = json.loads(listing.stdout)["kernelspecs"]
    # only those in this prefix: a developer's venv may hold its own rpyc kernelspec too
    return {name: spec for name, spec in specs.items() if spec["resource_dir"].startswith(str(prefix))}


def test_install_writes_spec_logos_and_board_env(tmp_path):
    result = run_install(
        "--prefix",
        str(tmp_path),
        "--name",
        "rpyc-pi",
        "--display-name",
        "Board (pi)",
        "--host",
        "raspberrypi.local",
        "--port",
        "18813",
    )
    assert result.returncode == 0, result.stderr
    spec_dir = tmp_path / "share" / "jupyter" / "kernels" / "rpyc-pi"
    spec = json.loads((spec_dir / "kernel.json").read_text())
    assert spec["argv"] == [sys.executable, "-m", "rpyc_ikernel", "-f", "{connection_file}"]
    assert spec["language"] == "python"
    assert spec["display_name"] == "Board (pi)"
    assert spec["env"] == {"RPYC_IKERNEL_HOST": "raspberrypi.local", "RPYC_IKERNEL_PORT": "18813"}
    assert {p.name for p in spec_dir.glob("logo-*.png")} >= {"logo-32x32.png", "logo-64x64.png"}
    listed = kernelspecs(tmp_path)
    assert listed["rpyc-pi"]["spec"]["display_name"] == "Board (pi)"


def test_default_name_is_rpyc_and_no_env_without_host(tmp_path):
    assert run_install("--prefix", str(tmp_path)).returncode == 0
    listed = kernelspecs(tmp_path)
    assert "rpyc" in listed
    assert "env" not in listed["rpyc"]["spec"] or not listed["rpyc"]["spec"]["env"]


def test_uninstall_removes_it(tmp_path):
    assert run_install("--prefix", str(tmp_path)).returncode == 0
    result = run_install("--prefix", str(tmp_path), "--uninstall")
    assert result.returncode == 0, result.stderr
    assert "rpyc" not in kernelspecs(tmp_path)
    again = run_install("--prefix", str(tmp_path), "--uninstall")
    assert again.returncode == 1
    assert "No kernelspec named 'rpyc'" in again.stderr


def test_user_install_goes_to_the_user_data_dir(tmp_path):
    env = dict(os.environ, JUPYTER_DATA_DIR=str(tmp_path / "data"))
    assert run_install("--user", env=env).returncode == 0
    assert (tmp_path / "data" / "kernels" / "rpyc" / "kernel.json").is_file()
    assert run_install("--user", "--uninstall", env=env).returncode == 0
    assert not (tmp_path / "data" / "kernels" / "rpyc").exists()


def test_bad_port_is_refused(tmp_path):
    result = run_install("--prefix", str(tmp_path), "--port", "http")
    assert result.returncode == 2
    assert "invalid int value" in result.stderr


def test_token_and_tls_go_into_a_private_spec(tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_text("not checked at install time")
    # 16 characters at least: the board server's rule (a 5-character token is refused, test_first_hour)
    result = run_install("--prefix", str(tmp_path), "--token", "t0ken-0123456789", "--ca", str(ca))
    assert result.returncode == 0, result.stderr
    spec_file = tmp_path / "share" / "jupyter" / "kernels" / "rpyc" / "kernel.json"
    env = json.loads(spec_file.read_text())["env"]
    assert env == {
        "RPYC_IKERNEL_TOKEN": "t0ken-0123456789",
        "RPYC_IKERNEL_TLS": "1",
        "RPYC_IKERNEL_CA": str(ca),
    }
    assert spec_file.stat().st_mode & 0o077 == 0


def test_adb_presets_write_adb_env(tmp_path):
    assert run_install("--prefix", str(tmp_path), "--name", "usb", "--adb").returncode == 0
    assert (
        run_install(
            "--prefix", str(tmp_path), "--name", "maix", "--adb", "0123AB", "--port", "18813"
        ).returncode
        == 0
    )
    listed = kernelspecs(tmp_path)
    assert listed["usb"]["spec"]["env"] == {"RPYC_IKERNEL_ADB": "1"}
    assert listed["maix"]["spec"]["env"] == {
        "RPYC_IKERNEL_PORT": "18813",
        "RPYC_IKERNEL_ADB": "1",
        "RPYC_IKERNEL_ADB_SERIAL": "0123AB",
    }


def test_host_and_adb_exclude_each_other(tmp_path):
    result = run_install("--prefix", str(tmp_path), "--host", "pi.local", "--adb")
    assert result.returncode == 2
    assert "--host and --adb exclude each other" in result.stderr


def test_list_shows_each_preset_its_board_and_where_it_is(tmp_path):
    for args in (
        [],
        ["--name", "rpyc-pi", "--display-name", "Board (pi)", "--host", "192.168.1.5", "--port", "18812"],
        ["--name", "rpyc-maix", "--display-name", "MaixPy (USB)", "--adb", "0123AB"],
    ):
        assert run_install("--prefix", str(tmp_path), *args).returncode == 0
    kernels = tmp_path / "share" / "jupyter" / "kernels"
    (kernels / "other").mkdir()  # a kernelspec of another kernel is not a preset
    (kernels / "other" / "kernel.json").write_text(
        json.dumps(
            {"argv": ["python", "-m", "ipykernel_launcher"], "display_name": "Python", "language": "python"}
        )
    )
    result = run_install("--list", "--prefix", str(tmp_path))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["NAME", "DISPLAY", "NAME", "BOARD", "WHERE"]
    rows = {line.split()[0]: line for line in lines[1:]}
    assert set(rows) == {"rpyc", "rpyc-pi", "rpyc-maix"}
    assert "Board (pi)" in rows["rpyc-pi"] and "192.168.1.5:18812" in rows["rpyc-pi"]
    assert "MaixPy (USB)" in rows["rpyc-maix"] and "adb 0123AB, port 18812" in rows["rpyc-maix"]
    assert "default (RPYC_IKERNEL_HOST, else 127.0.0.1:18812)" in rows["rpyc"]
    assert rows["rpyc-pi"].endswith(str(kernels / "rpyc-pi"))
    # without a place: every preset Jupyter sees, this prefix's included
    env = dict(os.environ, JUPYTER_PATH=str(tmp_path / "share" / "jupyter"))
    seen = run_install("--list", env=env).stdout
    assert str(kernels / "rpyc-maix") in seen


def test_list_says_when_there_is_none(tmp_path):
    result = run_install("--list", "--prefix", str(tmp_path))
    assert result.returncode == 0
    assert result.stdout.startswith("No rpyc_ikernel kernelspecs found")


def test_a_token_on_stdin_stays_off_argv_and_kernel_json_is_private_from_its_creation(tmp_path):
    """`--token -` reads the token from stdin (ps shows argv to every user); every kernel.json that holds
    the token is 0600 at every moment, even under umask 0: an audit hook in the installer's process
    records the mode of kernel.json at each file event (open, chmod, rename, copy)."""
    token = "stdin-token-0123456789abcdef"
    spec_file = tmp_path / "share" / "jupyter" / "kernels" / "rpyc" / "kernel.json"
    probe = f"""
import os, sys
seen, busy = [], []
def hook(event, args, path={str(spec_file)!r}):
    if busy or event not in ("open", "os.chmod", "os.rename", "os.replace", "shutil.copyfile"):
        return
    busy.append(1)  # the hook's own open() raises events too
    try:
        with open(path, "rb") as handle:
            data = handle.read()
        seen.append((oct(os.stat(path).st_mode & 0o777), {token!r}.encode() in data))
    except OSError:
        pass
    finally:
        busy.pop()
sys.addaudithook(hook)
os.umask(0)
from rpyc_ikernel.install import main
code = main(["--prefix", {str(tmp_path)!r}, "--token", "-"])
print(sorted(set(seen)))
sys.exit(code)
"""
    done = subprocess.run([sys.executable, "-c", probe], input=token + "\n", capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    env = json.loads(spec_file.read_text())["env"]
    assert env == {"RPYC_IKERNEL_TOKEN": token}
    assert stat.S_IMODE(spec_file.stat().st_mode) == 0o600
    seen = eval(done.stdout.strip().splitlines()[-1])  # [(mode, holds the token), ...]
    assert seen and all(mode == "0o600" for mode, secret in seen if secret), seen


def test_token_dash_with_nothing_on_stdin_is_one_clear_line(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "rpyc_ikernel.install", "--prefix", str(tmp_path), "--token", "-"],
        input="",
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert "no token on stdin" in result.stderr
    assert not (tmp_path / "share" / "jupyter" / "kernels" / "rpyc").exists()
