"""ipykernel's own protocol tests (tests/ of its sdist, for the installed version), fetched once and cached.

`make test` must work on a fresh machine: the sdist comes from the package index through pip (only
ipykernel as source; its build backend as a wheel), and its tests/ are kept under .venv, which
`make clean` removes with the rest of the environment.
"""

from __future__ import annotations

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
        staged = target / "tests.partial"
        shutil.rmtree(staged, ignore_errors=True)
        shutil.move(str(unpacked / prefix), str(staged))
        staged.rename(target / "tests")
    return target / "tests"
