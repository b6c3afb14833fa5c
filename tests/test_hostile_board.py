"""A hostile board against the kernel (issue 20): oversized frames, inflation bombs and malformed
messages end the cell with one line, the kernel's memory stays bounded, and the next cell works (20.3);
a board's answer chooses neither the local name nor the mode of a download (20.4)."""

from __future__ import annotations

import os
import stat
import time

import pytest
from helpers import KernelSession, start_board
from hostile_board import attack_cell, lying_downloads_cell

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
        ("huge", "a message of 4096 MiB, over the limit of 64 MiB"),
        ("bomb", "a message that inflates past the limit of 64 MiB"),
        ("trickle", "trickled a message at 5 bytes/s"),
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
    deadline = time.monotonic() + 20  # the next cell reconnects, once the board's attacking cell ended
    while "still running an earlier cell" in str((cell := victim.run("1 + 1")).reply.get("evalue")):
        assert time.monotonic() < deadline
        time.sleep(0.5)
    assert cell.result == {"text/plain": "2"}


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def test_a_board_cannot_choose_the_local_name_or_mode_of_a_download(kernelspec_prefix, tmp_path):
    precious = tmp_path / "home" / ".bashrc"
    precious.parent.mkdir()
    precious.write_text("precious")
    board_file = tmp_path / "board" / "data.csv"
    board_file.parent.mkdir()
    board_file.write_text("a,b\n1,2\n")
    board_file.chmod(0o666)
    down = tmp_path / "down"
    down.mkdir()
    server = start_board()
    session = KernelSession.start(board_port=server.port)
    try:
        assert session.run(lying_downloads_cell(str(precious))).status == "ok"
        cell = session.run(f"# exec(self.download({str(board_file)!r}, {str(down)!r}))")
        assert cell.status == "ok", cell.error
        assert precious.read_text() == "precious"
        arrived = down / "data.csv"
        assert arrived.read_text() == "a,b\n1,2\n"
        mode = stat.S_IMODE(arrived.stat().st_mode)
        assert mode == 0o775 & ~_umask()  # the board said 6777: no setuid/setgid/world-write; umask
        assert not mode & (stat.S_ISUID | stat.S_ISGID | stat.S_IWOTH)
    finally:
        session.stop()
        server.stop()


def test_an_honest_world_writable_file_arrives_masked_and_replacing_needs_a_name_or_overwrite(
    kernel, tmp_path
):
    board_file = tmp_path / "board" / "log.txt"
    board_file.parent.mkdir()
    board_file.write_text("new")
    board_file.chmod(0o666)
    down = tmp_path / "down"
    down.mkdir()
    cell = kernel.run(f"# exec(self.download({str(board_file)!r}, {str(down)!r}))")
    assert cell.status == "ok", cell.error
    assert stat.S_IMODE((down / "log.txt").stat().st_mode) == 0o664 & ~_umask()
    (down / "log.txt").write_text("old")
    cell = kernel.run(
        f"# exec(self.download({str(board_file)!r}, {str(down)!r}))"
    )  # name from the board path
    assert cell.status == "error"
    assert cell.error["evalue"] == (
        f"download: {down / 'log.txt'} exists and was kept; to replace it, name it as the local path,"
        " or pass overwrite=True"
    )
    assert (down / "log.txt").read_text() == "old"
    assert sorted(p.name for p in down.iterdir()) == ["log.txt"]  # no temporary file left
    cell = kernel.run(f"# exec(self.download({str(board_file)!r}, {str(down)!r}, overwrite=True))")
    assert cell.status == "ok", cell.error
    assert (down / "log.txt").read_text() == "new"
    (down / "log.txt").write_text("old")
    cell = kernel.run(f"# exec(self.download({str(board_file)!r}, {str(down / 'log.txt')!r}))")  # named
    assert cell.status == "ok", cell.error
    assert (down / "log.txt").read_text() == "new"
    (down / "log.txt").write_text("old")
    cell = kernel.run(
        f"# exec(self.download({str(board_file)!r}, {str(down / 'log.txt')!r}, overwrite=False))"
    )
    assert cell.status == "error" and (down / "log.txt").read_text() == "old"
