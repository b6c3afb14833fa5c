"""Get this agent version into a board process and attach our session, in as few round trips as possible.

The agent is the package ``rpyc_ikernel/agent``. All its sources travel in one call, with one
version hash over all of them: ``boot.py`` as text, the other modules zlib-compressed in one blob.
On the board, boot.py serves them from memory (see its docstring). A board process that already
has this version is asked for nothing but the attach.
"""

from __future__ import annotations

import binascii
import hashlib
import zlib
from pathlib import Path

from .agent import wire

AGENT_DIR = Path(__file__).with_name("agent")
BOOT_PATH = "boot.py"
BOOT_FILE = "<rpyc_ikernel agent>/" + BOOT_PATH  # the agent's files on the board are named <...>/path


def agent_sources(directory: Path = AGENT_DIR) -> dict[str, str]:
    """Every module of the agent package: {path in the package ("magics/osm.py"): source}."""
    return {
        path.relative_to(directory).as_posix(): path.read_text(encoding="utf-8")
        for path in sorted(directory.rglob("*.py"))
    }


def version_of(sources: dict[str, str]) -> str:
    """One hash over all sources: a board process has this agent exactly when it has this version."""
    digest = hashlib.sha256()
    for path, source in sorted(sources.items()):
        digest.update(path.encode("utf-8") + b"\0" + source.encode("utf-8") + b"\0")
    return digest.hexdigest()[:16]


def bundle(sources: dict[str, str]) -> tuple[bytes, tuple]:
    """(blob, index): each module but boot.py compressed, end to end; index = ((path, start, end), ...)."""
    blob = bytearray()
    index = []
    for path, source in sorted(sources.items()):
        if path == BOOT_PATH:
            continue
        packed = zlib.compress(source.encode("utf-8"), 9)
        index.append((path, len(blob), len(blob) + len(packed)))
        blob += packed
    return bytes(blob), tuple(index)


SOURCES = agent_sources()
VERSION = version_of(SOURCES)
_BLOB, _INDEX = bundle(SOURCES)


def reuse_expression(session_id: str | None) -> str:
    """Python for the board's eval: connect() of this agent version if the process has it, else None."""
    return (
        f"(lambda agent: agent.connect({session_id!r}) if getattr(agent, 'VERSION', None) == {VERSION!r}"
        f" else None)(__import__('sys').modules.get({wire.PACKAGE!r}))"
    )


def install_expression(session_id: str | None) -> str:
    """Python for the board's eval: run boot.py, install this agent version, then connect()."""
    blob = f"__import__('binascii').a2b_base64({binascii.b2a_base64(_BLOB, newline=False).decode('ascii')!r})"
    return (
        f"(lambda boot: (boot.__dict__.update(__file__={BOOT_FILE!r}),"
        f" exec(compile({SOURCES[BOOT_PATH]!r}, {BOOT_FILE!r}, 'exec', dont_inherit=True), boot.__dict__),"
        f" boot.install(boot, {wire.PACKAGE!r}, {VERSION!r}, {blob}, {_INDEX!r})"
        f")[2].connect({session_id!r}))(type(__import__('sys'))({wire.PACKAGE + '.boot'!r}))"
    )
