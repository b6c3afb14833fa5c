"""Transfers are bounded: special files are refused in one line, a file is read up to its size at open.

A real kernel and the session's board server on 127.0.0.1: board paths are local temporary paths.
"""

from __future__ import annotations

import json
import os
import uuid

import pytest
from test_transfer import leftovers

from rpyc_ikernel.board import Address, Board, call

pytestmark = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs and /dev/zero")


def assert_refused_in_one_line(kernel, command: str, message: str) -> None:
    cell = kernel.run(f"# exec({command})\nprint('not reached')", timeout=30)
    assert cell.status == "error"
    assert cell.error["ename"] == "TransferError"
    assert cell.error["evalue"].startswith(message), cell.error["evalue"]
    assert "\n" not in cell.error["evalue"]
    assert cell.stream() == ""
    assert kernel.run("1 + 1").result == {"text/plain": "2"}


def test_downloading_a_device_is_refused(kernel, tmp_path):
    target = tmp_path / "zero.bin"
    assert_refused_in_one_line(
        kernel,
        f"self.download('/dev/zero', {str(target)!r})",
        "download: /dev/zero is not a regular file on the board (a device, FIFO or socket)",
    )
    assert not target.exists() and leftovers(tmp_path) == []


def test_downloading_a_fifo_is_refused_without_waiting_for_a_writer(kernel, tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    assert_refused_in_one_line(
        kernel,
        f"self.download({str(fifo)!r}, {str(tmp_path / 'x.bin')!r})",
        f"download: {fifo} is not a regular file on the board",
    )
    assert leftovers(tmp_path) == []


def test_uploading_a_fifo_is_refused_without_waiting_for_a_writer(kernel, tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    assert_refused_in_one_line(
        kernel,
        f"self.upload({str(fifo)!r}, {str(tmp_path / 'x.bin')!r})",
        f"upload: {fifo} is not a regular file (a device, FIFO or socket)",
    )


def test_a_file_that_grows_is_sent_up_to_its_size_at_open(board, tmp_path):
    growing = tmp_path / "growing.log"
    growing.write_bytes(b"a" * 1000)
    conn, agent = Board(Address("127.0.0.1", board.port), uuid.uuid4().hex).open_connection()
    try:
        handle = uuid.uuid4().hex
        opened = json.loads(call(conn, agent.open_download, handle, str(growing), timeout=5))
        assert (opened["size"], opened["limit"]) == (1000, 1000)
        with growing.open("ab") as more:
            more.write(b"b" * 5000)
        received = b""
        while True:
            chunk = call(conn, agent.read_chunk, handle, 4096, timeout=5)
            if not chunk:
                break
            received += chunk
        assert received == b"a" * 1000
        finished = json.loads(call(conn, agent.finish_download, handle, timeout=5))
        assert finished["size"] == 1000
    finally:
        conn.close()


def test_a_proc_file_that_reports_size_zero_still_downloads(kernel, tmp_path):
    target = tmp_path / "status.txt"
    cell = kernel.run(f"# exec(self.download('/proc/self/status', {str(target)!r}))", timeout=30)
    assert cell.status == "ok", cell.error
    assert os.stat("/proc/self/status").st_size == 0  # what makes it special
    assert target.read_text().startswith("Name:")
