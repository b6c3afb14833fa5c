"""ipykernel's own protocol tests (tests/ of its sdist, for the installed version), fetched once and cached.

`make test` must work on a fresh machine: the sdist comes from the package index through pip (only
ipykernel as source; its build backend as a wheel), and its tests/ are kept under .venv, which
`make clean` removes with the rest of the environment.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from importlib.metadata import version
from pathlib import Path

CACHE = Path(sys.prefix) / "ipykernel-tests"


def ipykernel_tests() -> Path:
    """The tests/ directory of the installed ipykernel's sdist (downloaded on first use)."""
    release = version("ipykernel")
    target = CACHE / release
    if (target / "tests" / "test_message_spec.py").exists():
        return target / "tests"
    with tempfile.TemporaryDirectory() as download:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", "ipykernel"]
            + ["--dest", download, f"ipykernel=={release}"],
            check=True,
            capture_output=True,
        )
        archive = next(Path(download).glob("ipykernel-*.tar.gz"))
        unpacked = Path(download, "unpacked")
        prefix = f"ipykernel-{release}/tests/"
        with tarfile.open(archive) as tar:
            members = [m for m in tar.getmembers() if m.name.startswith(prefix) and m.isfile()]
            tar.extractall(unpacked, members=members)  # noqa: S202 - names checked above
        target.mkdir(parents=True, exist_ok=True)
        # test workers may fetch it side by side: each stages its own copy, the first one in place
        # takes the name, the others see it taken and drop theirs
        staged = target / f"tests.partial-{os.getpid()}"
        shutil.rmtree(staged, ignore_errors=True)
        shutil.move(str(unpacked / prefix), str(staged))
        try:
            staged.rename(target / "tests")
        except OSError:
            if not (target / "tests" / "test_message_spec.py").exists():
                raise
        shutil.rmtree(staged, ignore_errors=True)
    return target / "tests"


def run_against_our_kernel(tmp_path: Path, files: list[str], *pytest_args: str) -> tuple[list, str]:
    """Run files of ipykernel's tests/ unchanged against this kernel, with one board server of ours
    behind it: our kernelspec is installed as `python3` (the kernel those tests start) in a prefix of
    its own. [(test name, failure text, "" when it passed)] in the order they ran, and pytest's output."""
    import xml.etree.ElementTree as ET

    from helpers import start_board

    tests = ipykernel_tests()
    prefix = tmp_path / "prefix"
    subprocess.run(
        [sys.executable, "-m", "rpyc_ikernel.install", "--prefix", str(prefix), "--name", "python3"],
        check=True,
        capture_output=True,
    )
    board = start_board()
    report = tmp_path / "report.xml"
    env = dict(os.environ)
    env["JUPYTER_PATH"] = str(prefix / "share" / "jupyter")
    env["RPYC_IKERNEL_HOST"] = "127.0.0.1"
    env["RPYC_IKERNEL_PORT"] = str(board.port)
    env.pop("PYTHONPATH", None)
    try:
        run = subprocess.run(
            [sys.executable, "-m", "pytest", "--noconftest", "-p", "no:cacheprovider", "-q", *pytest_args]
            + ["--junitxml", str(report), "-o", "junit_family=xunit1"]
            + [str(tests / name) for name in files],
            cwd=tests.parent,
            env=env,
            capture_output=True,
            text=True,
            timeout=540,
        )
    finally:
        board.stop()
    cases = []
    for case in ET.parse(report).getroot().iter("testcase"):
        bad = case.find("failure")
        bad = case.find("error") if bad is None else bad
        skipped = bad is None and case.find("skipped") is not None
        text = "" if bad is None else (bad.get("message") or "") + (bad.text or "")
        cases.append((case.get("name"), text, skipped))
    return cases, run.stdout
