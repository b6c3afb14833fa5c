"""Pipelined transfers and the side link kept ready, over the link emulator (tests/linkemu.py).

Behaviour, not speed: benchmarks/links.py measures how fast. One check here is structural: a
transfer of N chunks over a link of R seconds round trip cannot end within N * R unless its chunks
were on their way together, so it is asserted well below that bound.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
import uuid

import pytest
from helpers import KernelSession, reply_to, wait_for_iopub
from linkemu import LinkEmulator

from rpyc_ikernel.board import Address, Board, CellOutcome, Credentials
from rpyc_ikernel.link import call
from rpyc_ikernel.transfer import CHUNK_SIZE, download, upload

SIZE = 6 * 1024 * 1024 + 4321  # 25 chunks, the last one partial


@pytest.fixture()
def far_board(board):
    """The session's board behind a 100 ms RTT link with no bandwidth cap."""
    with LinkEmulator(board.port, rtt=0.1) as link:
        yield link


def new_board(link: LinkEmulator, warm: bool = True) -> Board:
    board = Board(
        Address("127.0.0.1", link.port),
        uuid.uuid4().hex,
        Credentials(forward=link.forward_env["RPYC_IKERNEL_FORWARD"]),
    )
    board.warm_side_link = warm
    return board


def wait_until(condition, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.02)
    return condition()


def test_a_pipelined_upload_and_download_of_several_mib_arrive_intact(far_board, tmp_path):
    data = os.urandom(SIZE)
    local, remote, back = tmp_path / "local.bin", tmp_path / "remote.bin", tmp_path / "back.bin"
    local.write_bytes(data)
    board = new_board(far_board)
    try:
        board.connect()
        progress = []
        sent = upload(board, local, str(remote), lambda done, total: progress.append((done, total)))
        assert remote.read_bytes() == data
        assert sent.size == SIZE and sent.sha256 == hashlib.sha256(data).hexdigest()
        assert progress[-1] == (SIZE, SIZE) and progress == sorted(progress)  # bytes the board wrote
        chunks = -(-SIZE // CHUNK_SIZE)
        assert sent.seconds < chunks * far_board.rtt / 2  # several chunks were on their way at once
        got = download(board, str(remote), back)
        assert back.read_bytes() == data and got.sha256 == sent.sha256
        assert got.seconds < chunks * far_board.rtt / 2
        assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".part")] == []
    finally:
        board.close()


def test_transfers_reuse_the_side_link_the_kernel_opened_in_the_background(far_board, tmp_path):
    (tmp_path / "small.txt").write_text("hello")
    board = new_board(far_board)
    try:
        board.connect()
        assert wait_until(lambda: board.side_links.ready)  # nobody asked for it: it was opened ahead
        assert far_board.open_connections == 2
        upload(board, tmp_path / "small.txt", str(tmp_path / "up.txt"))
        download(board, str(tmp_path / "up.txt"), tmp_path / "down.txt")
        assert (tmp_path / "down.txt").read_text() == "hello"
        assert far_board.connections == 2  # neither transfer opened a connection of its own
    finally:
        board.close()


def test_a_failed_transfer_leaves_a_working_side_link_behind(far_board, tmp_path):
    (tmp_path / "big.bin").write_bytes(os.urandom(3 * CHUNK_SIZE))
    board = new_board(far_board)
    try:
        board.connect()
        with pytest.raises(Exception, match="no such directory on the board"):
            upload(board, tmp_path / "big.bin", str(tmp_path / "missing" / "big.bin"))
        sent = upload(board, tmp_path / "big.bin", str(tmp_path / "big2.bin"))
        assert (tmp_path / "big2.bin").read_bytes() == (tmp_path / "big.bin").read_bytes()
        assert sent.size == 3 * CHUNK_SIZE
    finally:
        board.close()


def test_an_interrupt_works_as_the_very_first_use_of_the_side_link(far_board):
    board = new_board(far_board)
    outcome = []
    try:
        board.connect()
        assert wait_until(lambda: board.side_links.ready)
        before = far_board.connections

        def run() -> None:
            for item in board.run_cell("import time\ntime.sleep(30)", "<cell-1>"):
                if isinstance(item, CellOutcome):
                    outcome.append(item)

        cell = threading.Thread(target=run, daemon=True)
        cell.start()
        time.sleep(0.5)
        assert board.interrupt(board.running_cell_id) is True
        cell.join(15)
        assert outcome and outcome[0].reply["ename"] == "KeyboardInterrupt"
        assert far_board.connections == before  # it went through the link opened ahead
        again = list(board.run_cell("6 * 7", "<cell-2>"))
        assert again[-1].result["data"]["text/plain"] == "42"
    finally:
        board.close()


def test_the_first_interrupt_of_a_kernel_over_a_far_link_stops_the_cell(kernelspec_prefix, far_board):
    session = KernelSession.start(board_port=far_board.port, env=far_board.forward_env)
    try:
        msg_id = session.client.execute("import time\ntime.sleep(30)")
        wait_for_iopub(session.client, msg_id)  # the cell (and with it the connect) has begun
        time.sleep(1.5)
        session.manager.interrupt_kernel()
        reply = shell_reply(session, msg_id)
        assert reply["status"] == "error" and reply["ename"] == "KeyboardInterrupt", reply
        assert session.run_after_error("6 * 7").result == {"text/plain": "42"}
    finally:
        session.stop()


def test_the_board_refuses_a_chunk_out_of_order(board, tmp_path):
    conn, agent = Board(Address("127.0.0.1", board.port), uuid.uuid4().hex).open_connection()
    try:
        handle = uuid.uuid4().hex
        target = tmp_path / "ordered.bin"
        json.loads(call(conn, agent.open_upload, handle, str(target), "x", 10, 0o644, timeout=5))
        assert json.loads(call(conn, agent.write_chunk, handle, b"hello", 0, timeout=5)) == {"size": 5}
        refused = json.loads(call(conn, agent.write_chunk, handle, b"world", 7, timeout=5))
        assert refused["error"].startswith("chunk at byte 7 arrived while the board is at byte 5")
        assert not target.exists() and [p for p in tmp_path.iterdir()] == []  # dropped, nothing left
    finally:
        conn.close()


def test_reads_asked_ahead_of_a_file_that_shrank_come_back_empty(board, tmp_path):
    shrinking = tmp_path / "shrinking.bin"
    shrinking.write_bytes(b"a" * 1000)
    conn, agent = Board(Address("127.0.0.1", board.port), uuid.uuid4().hex).open_connection()
    try:
        handle = uuid.uuid4().hex
        opened = json.loads(call(conn, agent.open_download, handle, str(shrinking), timeout=5))
        assert opened["limit"] == 1000
        shrinking.write_bytes(b"b" * 300)  # truncated after the open
        assert call(conn, agent.read_chunk, handle, 400, 0, timeout=5) == b"b" * 300
        assert call(conn, agent.read_chunk, handle, 400, 400, timeout=5) == b""
        assert call(conn, agent.read_chunk, handle, 200, 800, timeout=5) == b""
        finished = json.loads(call(conn, agent.finish_download, handle, timeout=5))
        assert finished["size"] == 300
    finally:
        conn.close()


def shell_reply(session: KernelSession, msg_id: str) -> dict:
    """The content of the reply to msg_id (earlier replies, e.g. kernel_info's, are skipped)."""
    return reply_to(session.client, msg_id)["content"]
