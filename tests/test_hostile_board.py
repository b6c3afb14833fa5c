"""A hostile board against the kernel (issue 20.3): oversized frames, inflation bombs and malformed
messages end the cell with one line, the kernel's memory stays bounded, and the next cell works."""

from __future__ import annotations

import pytest
from helpers import KernelSession, start_board
from hostile_board import attack_cell

MIB = 1048576


def _memory(session: KernelSession) -> dict:
    """The kernel process's VmRSS and VmHWM (peak) in bytes."""
    pid = session.manager.provisioner.pid
    values = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            name, _, rest = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                values[name] = int(rest.split()[0]) * 1024
    return values


@pytest.fixture(scope="module")
def victim(kernelspec_prefix):
    server = start_board()
    session = KernelSession.start(board_port=server.port)
    yield session
    session.stop()
    server.stop()


@pytest.mark.parametrize(
    ("kind", "says"),
    [
        ("huge", "limit is 64 MiB"),
        ("bomb", "limit is 64 MiB"),
        ("bad_type", "malformed message"),
        ("deep", "malformed message"),
    ],
)
def test_hostile_message_ends_the_cell_with_one_line_and_bounded_memory(victim, kind, says):
    assert victim.run("1 + 1").result == {"text/plain": "2"}
    before = _memory(victim)
    cell = victim.run(attack_cell(kind), timeout=60)
    assert cell.status == "error"
    assert cell.reply["ename"] == "BoardMisbehaved"
    assert says in cell.reply["evalue"]
    assert len(cell.reply["traceback"]) == 1 and "\n" not in cell.reply["traceback"][0]
    after = _memory(victim)
    assert after["VmHWM"] - before["VmHWM"] < 96 * MIB, (before, after)  # the limit (64 MiB) and change
    assert after["VmRSS"] - before["VmRSS"] < 24 * MIB, (before, after)
    assert victim.run("1 + 1").result == {"text/plain": "2"}  # the next cell reconnects
