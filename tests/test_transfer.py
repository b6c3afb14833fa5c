"""File transfer: self.upload / self.download through a real kernel and a real board server.

The board server runs on this machine, so "board paths" are temporary paths the test can read too.
"""

from __future__ import annotations

import hashlib
import json
import os
import queue
import sys
import time
import uuid

import pytest
from helpers import PLAIN_BOARD, KernelSession, reply_to, start_board

from rpyc_ikernel.board import Address, Board
from rpyc_ikernel.link import call

SIZE = 8 * 1024 * 1024 + 12345  # several chunks and a partial last one


@pytest.fixture(scope="module")
def payload(tmp_path_factory):
    path = tmp_path_factory.mktemp("payload") / "local.bin"
    data = os.urandom(SIZE)
    path.write_bytes(data)
    path.chmod(0o640)
    return path


def leftovers(directory) -> list:
    return [p.name for p in directory.iterdir() if p.name.endswith(".part")]


def test_upload_streams_a_large_binary_file_with_progress_in_place(kernel, payload, tmp_path):
    remote = tmp_path / "remote.bin"
    cell = kernel.run(f"# exec(self.upload({str(payload)!r}, {str(remote)!r}))")
    assert cell.status == "ok", cell.error
    assert remote.read_bytes() == payload.read_bytes()
    assert remote.stat().st_mode & 0o777 == 0o640  # the local file's permission bits
    digest = hashlib.sha256(payload.read_bytes()).hexdigest()
    summary = cell.stream()
    assert f"Uploaded {payload} -> board:{remote}: 8.0 MiB" in summary
    assert f"sha256 {digest[:12]}... matches" in summary
    first = cell.of_type("display_data")
    updates = cell.of_type("update_display_data")
    assert len(first) == 1 and updates
    display_id = first[0]["transient"]["display_id"]
    assert all(u["transient"]["display_id"] == display_id for u in updates)
    assert "100%" in updates[-1]["data"]["text/plain"]
    assert "<progress" in updates[-1]["data"]["text/html"]
    assert leftovers(tmp_path) == []


def test_download_round_trip_is_binary_safe(kernel, payload, tmp_path):
    board_file = tmp_path / "on_board.bin"
    board_file.write_bytes(payload.read_bytes())
    board_file.chmod(0o600)
    local = tmp_path / "copy.bin"
    cell = kernel.run(f"# exec(self.download({str(board_file)!r}, {str(local)!r}))")
    assert cell.status == "ok", cell.error
    assert local.read_bytes() == payload.read_bytes()
    assert local.stat().st_mode & 0o777 == 0o600
    assert f"Downloaded board:{board_file} -> {local}: 8.0 MiB" in cell.stream()
    assert cell.of_type("update_display_data")
    assert leftovers(tmp_path) == []


def test_a_directory_target_keeps_the_file_name_and_small_files_show_no_bar(kernel, tmp_path):
    (tmp_path / "up").mkdir()
    (tmp_path / "down").mkdir()
    small = tmp_path / "config.txt"
    small.write_text("rate=5\n")
    cell = kernel.run(f"# exec(self.upload({str(small)!r}, {str(tmp_path / 'up')!r} + '/'))")
    assert cell.status == "ok", cell.error
    assert (tmp_path / "up" / "config.txt").read_text() == "rate=5\n"
    assert cell.of_type("display_data") == []
    cell = kernel.run(
        f"# exec(self.download({str(tmp_path / 'up' / 'config.txt')!r}, {str(tmp_path / 'down')!r}))"
    )
    assert cell.status == "ok", cell.error
    assert (tmp_path / "down" / "config.txt").read_text() == "rate=5\n"


def test_an_existing_file_is_replaced_and_compression_can_be_asked_for(kernel, tmp_path):
    source = tmp_path / "log.csv"
    source.write_bytes(b"t,value\n" + b"".join(b"%d,%d\n" % (i, i * i) for i in range(200_000)))
    remote = tmp_path / "remote.csv"
    remote.write_text("old")
    cell = kernel.run(f"# exec(self.upload({str(source)!r}, {str(remote)!r}, compress=True))")
    assert cell.status == "ok", cell.error
    assert remote.read_bytes() == source.read_bytes()


@pytest.mark.parametrize(
    "command, message",
    [
        ("self.upload('{tmp}/missing.bin', '{tmp}/x.bin')", "upload: no such local file: {tmp}/missing.bin"),
        ("self.upload('{tmp}', '{tmp}/x.bin')", "upload: {tmp} is a directory; upload files one at a time"),
        (
            "self.upload('{payload}', '{tmp}/no/such/dir/x.bin')",
            "upload: no such directory on the board: {tmp}/no/such/dir (create it first)",
        ),
        (
            "self.download('{tmp}/missing.bin', '{tmp}/x.bin')",
            "download: no such file on the board: {tmp}/missing.bin",
        ),
        ("self.download('{tmp}/gone/x.bin')", "download: no such directory on the board: {tmp}/gone"),
        ("self.download('{tmp}', '{tmp}/x.bin')", "download: {tmp} is a directory on the board"),
        (
            "self.download('{payload}', '{tmp}/nowhere/x.bin')",
            "download: no such local directory: {tmp}/nowhere (create it first)",
        ),
    ],
)
def test_missing_paths_give_one_clear_line(kernel, payload, tmp_path, command, message):
    command = command.format(tmp=tmp_path, payload=payload)
    cell = kernel.run(f"# exec({command})\nprint('not reached')")
    assert cell.status == "error"
    assert cell.error["ename"] == "TransferError"
    assert cell.error["evalue"].startswith(message.format(tmp=tmp_path, payload=payload))
    assert "\n" not in cell.error["evalue"]
    assert cell.stream() == ""
    assert leftovers(tmp_path) == [] and not (tmp_path / "x.bin").exists()
    assert kernel.run("1 + 1").result == {"text/plain": "2"}


def test_transfers_work_with_a_plain_rpyc_server(kernelspec_prefix, payload, tmp_path):
    server = start_board(command=[sys.executable, str(PLAIN_BOARD)])
    session = KernelSession.start(board_port=server.port)
    try:
        remote = tmp_path / "remote.bin"
        cell = session.run(
            f"# exec(self.upload({str(payload)!r}, {str(remote)!r}))\n"
            f"# exec(self.download({str(remote)!r}, {str(tmp_path / 'back.bin')!r}))"
        )
        assert cell.status == "ok", cell.error
        assert (tmp_path / "back.bin").read_bytes() == payload.read_bytes()
    finally:
        session.stop()
        server.stop()


def test_the_board_keeps_an_upload_whose_checksum_does_not_match_out_of_place(board, tmp_path):
    conn, agent = Board(Address("127.0.0.1", board.port), uuid.uuid4().hex).open_connection()
    try:
        target = tmp_path / "firmware.bin"
        handle = uuid.uuid4().hex
        opened = json.loads(call(conn, agent.open_upload, handle, str(target), "x", 5, 0o644, timeout=5))
        assert opened == {"path": str(target)}
        call(conn, agent.write_chunk, handle, b"hello", timeout=5)
        reply = json.loads(call(conn, agent.finish_upload, handle, "0" * 64, timeout=5))
        assert reply["error"].startswith("checksum mismatch: the board received sha256")
        assert not target.exists() and leftovers(tmp_path) == []
        again = json.loads(call(conn, agent.write_chunk, handle, b"more", timeout=5))
        assert "abandoned" in again["error"]
    finally:
        conn.close()


def test_an_interrupted_transfer_leaves_no_partial_file_and_the_kernel_goes_on(kernel, tmp_path):
    big = tmp_path / "big.bin"
    with big.open("wb") as handle:
        for _ in range(16):
            handle.write(os.urandom(1024 * 1024))
    (tmp_path / "board").mkdir()
    remote = tmp_path / "board" / "big.bin"
    msg_id = kernel.client.execute(f"# exec(self.upload({str(big)!r}, {str(remote)!r}, compress=True))")
    deadline = time.monotonic() + 10
    while not kernel_shows_progress(kernel) and time.monotonic() < deadline:
        time.sleep(0.01)
    kernel.manager.interrupt_kernel()
    reply = reply_to(kernel.client, msg_id)["content"]
    assert reply["status"] == "error" and reply["ename"] == "KeyboardInterrupt", reply
    assert not remote.exists()
    deadline = time.monotonic() + 5
    while leftovers(tmp_path / "board") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert leftovers(tmp_path / "board") == []
    assert kernel.run("1 + 1").result == {"text/plain": "2"}


def kernel_shows_progress(kernel) -> bool:
    while True:
        try:
            msg = kernel.client.get_iopub_msg(timeout=0.01)
        except queue.Empty:
            return False
        if msg["msg_type"] == "display_data":
            return True
