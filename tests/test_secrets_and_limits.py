"""Smaller holes of issue 20.7: tokens stay out of IPython's history, live images cap their pixels
before decoding, and a host name DNS cannot take is one line instead of a hang."""

from __future__ import annotations

import base64
import io
import sqlite3
import sys
from pathlib import Path

from helpers import KernelSession, start_board
from PIL import Image
from test_hostile_board import MIB, _memory

NO_PILLOW_BOARD = Path(__file__).with_name("board_without_pillow.py")
SECRET = "typed-in-a-cell-0123456789abcdef"


def test_a_token_typed_in_a_cell_is_not_kept_in_history(kernelspec_prefix, tmp_path):
    server = start_board()
    ipython_dir = tmp_path / "ipython"
    session = KernelSession.start(board_port=server.port, env={"IPYTHONDIR": str(ipython_dir)})
    try:
        cell = session.run(
            f'# exec(self.connect_remote("127.0.0.1", port={server.port}, token="{SECRET}"))\n1 + 1'
        )
        assert cell.status == "error"  # the board has another token: that does not matter here
        history = session.request("history", hist_access_type="tail", n=10, raw=True, output=False)
        texts = [entry[2] for entry in history["history"]]
        assert any('token="<hidden>"' in text for text in texts), texts
        assert not any(SECRET in text for text in texts)
    finally:
        session.stop()
        server.stop()
    [database] = ipython_dir.glob("profile_default/history.sqlite")
    with sqlite3.connect(database) as db:
        rows = [row for row in db.execute("select source, source_raw from history")]
    assert rows and not any(SECRET in text for row in rows for text in row)


def test_a_live_image_of_too_many_pixels_is_not_decoded(kernelspec_prefix):
    """A board without Pillow sends a TIFF as it is; the kernel reads its size before decoding."""
    buffer = io.BytesIO()
    Image.new("L", (8000, 8000)).save(buffer, "TIFF", compression="tiff_deflate")
    tiff = buffer.getvalue()
    assert len(tiff) < 400_000
    server = start_board([sys.executable, str(NO_PILLOW_BOARD), "--host", "127.0.0.1"])
    session = KernelSession.start(board_port=server.port)
    try:
        assert (
            session.run(f"import base64\nhuge_tiff = base64.b64decode({base64.b64encode(tiff)!r})").status
            == "ok"
        )
        before = _memory(session)
        cell = session.run('# exec(self.display("huge_tiff"))')
        assert cell.status == "ok", cell.error
        [shown] = cell.of_type("display_data")
        assert "it is 8000x8000 pixels; the kernel decodes at most 8.3 million" in shown["data"]["text/plain"]
        after = _memory(session)
        assert after["VmHWM"] - before["VmHWM"] < 32 * MIB, (before, after)
        session.run("# exec(self.stop_display())")
    finally:
        session.stop()
        server.stop()


def test_a_host_name_dns_cannot_take_is_one_line_in_every_cell(kernelspec_prefix):
    session = KernelSession.start(
        env={"RPYC_IKERNEL_HOST": "b" * 64 + ".local", "RPYC_IKERNEL_PORT": "18812"}
    )
    try:
        for _ in range(2):
            cell = session.run("1 + 1", timeout=30)
            assert cell.status == "error"
            assert "a part of 64 characters; DNS allows 63" in cell.reply["evalue"]
            assert "\n" not in cell.reply["evalue"]
        cell = session.run('# exec(self.connect_remote("' + "c" * 70 + '"))', timeout=30)
        assert cell.status == "error" and "a part of 70 characters" in cell.reply["evalue"]
    finally:
        session.stop()
