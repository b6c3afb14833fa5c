"""A cell's output streamed over a slow link: polls kept on their way ahead, order, nothing lost or doubled.

The board answers a poll with at most one batch; while output streams in the kernel keeps polls on
their way ahead of the answers, so a 100 ms, 100 Mbit/s link carries batches back to back instead
of one per round trip. The board keeps each answer until the kernel acknowledges it: a dropped link
loses nothing, even with several answers in flight.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time

import pytest
from helpers import PLAIN_BOARD, KernelSession, start_board
from linkemu import LinkEmulator

from rpyc_ikernel.agent.iostream import FLUSH_SIZE, OutputBatch, SentAnswers

LINES = 150_000  # about 4.6 MB of numbered lines: several batches, more than the board may hold
PRINT_CELL = f"for i in range({LINES}):\n    print('line %07d' % i, 'x' * 16)"
EXPECTED = "".join(f"line {i:07d} {'x' * 16}\n" for i in range(LINES))
COUNT_AHEAD = (
    "import sys\nsum(s.exchange._answers.ahead for s in sys.modules['_rpyc_ikernel_agent'].SESSIONS.values())"
)


def stream_text(outputs: list) -> str:
    return "".join(m["content"]["text"] for m in outputs if m["msg_type"] == "stream")


def run_cell(session: KernelSession, code: str, timeout: float) -> tuple[dict, list]:
    outputs = []
    reply = session.client.execute_interactive(
        code, timeout=timeout, output_hook=lambda msg: outputs.append(msg)
    )
    return reply["content"], outputs


# ------------------------------------------------------------------ the board's bookkeeping, alone
class _Cond:
    def notify_all(self) -> None:
        pass


def test_a_batch_taken_in_parts_keeps_its_order():
    batch = OutputBatch(_Cond())
    for i in range(1000):
        batch.add_stream("stdout", f"{i}\n")
        if i % 250 == 0:
            batch.add_event({"msg_type": "display_data", "content": {"n": i}})
    batch.add_stream("stderr", "end\n")
    parts = []
    while batch.events:
        parts.append(batch.take(1000))
        assert batch.taken >= 1 and batch.size >= 0
    assert len(parts) > 3
    events = [event for part in parts for event in part]
    text = "".join(e["content"]["text"] for e in events if e["content"].get("name") == "stdout")
    assert text == "".join(f"{i}\n" for i in range(1000))
    assert [e["content"]["n"] for e in events if e["msg_type"] == "display_data"] == [0, 250, 500, 750]
    assert events[-1]["content"] == {"name": "stderr", "text": "end\n"}
    assert batch.size == 0 and batch.first_at is None


def test_a_full_batch_says_output_streams_in():
    batch = OutputBatch(_Cond())
    batch.add_stream("stdout", "x" * 100)
    batch.take(FLUSH_SIZE)
    assert not batch.streaming()
    batch.add_stream("stdout", "x" * (3 * FLUSH_SIZE))
    assert len(batch.take(FLUSH_SIZE)[0]["content"]["text"]) == FLUSH_SIZE  # a write is cut there
    assert batch.streaming() and batch.size == 2 * FLUSH_SIZE


def _answer(seq: int, *texts: str, **state) -> str:
    events = [{"msg_type": "stream", "content": {"name": "stdout", "text": text}} for text in texts]
    return json.dumps({"events": events, "done": False, "seq": seq, "running": True, **state})


def test_answers_in_flight_are_not_resent_to_a_poll_ahead_but_all_at_once_after_a_drop():
    answers = SentAnswers()
    answers.add(1, _answer(1, "a"))
    answers.add(2, _answer(2, "b", "c", more=True))
    answers.add(3, _answer(3, "d", more=True))
    assert answers.resend(1, ahead=True) is None  # 2 and 3 are on their way on this link: not lost
    assert answers.ahead == 1
    assert [json.loads(text)["seq"] for text in answers.missed(1)] == [2, 3]
    again = json.loads(answers.resend(1, ahead=False))  # a poll on a new link: 2 and 3 were lost
    assert [e["content"]["text"] for e in again["events"]] == ["b", "c", "d"]
    assert again["seq"] == 3 and again["more"] and not again["done"]
    assert answers.resend(3, ahead=False) is None
    assert answers.sent == []


def test_lost_answers_joined_keep_the_reply_and_the_earlier_cell():
    answers = SentAnswers()
    answers.add(4, _answer(4, "x", earlier={"cell_id": "c0", "events": [], "reply": None}))
    answers.add(5, _answer(5, "y", done=True, reply={"status": "ok"}, running=False))
    answers.add(6, _answer(6, running=False))  # a poll ahead, answered after the cell ended
    again = json.loads(answers.resend(None, ahead=False))
    assert again["done"] and again["reply"] == {"status": "ok"} and again["seq"] == 6
    assert again["earlier"]["cell_id"] == "c0"
    assert [e["content"]["text"] for e in again["events"]] == ["x", "y"]


# ------------------------------------------------------------------ through an emulated slow link
@pytest.fixture(scope="module")
def plain_board(kernelspec_prefix, tmp_path_factory):
    """The README's plain rpyc SlaveService board (it serves a connection's requests in order too)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    server = start_board(
        command=[sys.executable, str(PLAIN_BOARD)], cwd=tmp_path_factory.mktemp("plain"), env=env
    )
    yield server
    server.stop()


@pytest.mark.timeout(240)
@pytest.mark.parametrize("kind", ["ours", "plain"])
def test_streamed_output_keeps_polls_ahead_over_a_slow_link_in_order(kernelspec_prefix, request, kind):
    board = request.getfixturevalue("board" if kind == "ours" else "plain_board")
    with LinkEmulator(board.port, rtt=0.1, mbit=100) as link:
        session = KernelSession.start(board_port=link.port, env=link.forward_env)
        try:
            assert session.run("1", timeout=60).status == "ok"
            before = int(session.run(COUNT_AHEAD, timeout=60).result["text/plain"])
            reply, outputs = run_cell(session, PRINT_CELL, timeout=180)
            assert reply["status"] == "ok", reply
            assert stream_text(outputs) == EXPECTED
            after = int(session.run(COUNT_AHEAD, timeout=60).result["text/plain"])
            assert after - before >= 2  # polls were on their way while answers were
            quiet = session.run("print('small'); 1 + 1", timeout=60)  # the next cell is not held up
            assert quiet.stream() == "small\n" and quiet.result == {"text/plain": "2"}
        finally:
            session.stop()


@pytest.mark.timeout(300)
def test_drops_while_answers_are_in_flight_lose_and_double_nothing(kernelspec_prefix, board):
    with LinkEmulator(board.port, rtt=0.1, mbit=40) as link:
        session = KernelSession.start(board_port=link.port, env=link.forward_env)
        try:
            assert session.run("1", timeout=60).status == "ok"
            stop = threading.Event()
            drops = []

            def drop_now_and_then():
                time.sleep(0.6)
                while not stop.wait(0.7):
                    drops.append(link.drop_all())

            dropper = threading.Thread(target=drop_now_and_then, daemon=True)
            dropper.start()
            try:
                reply, outputs = run_cell(session, PRINT_CELL, timeout=240)
            finally:
                stop.set()
                dropper.join()
            assert reply["status"] == "ok", reply
            text = stream_text([m for m in outputs if m["content"].get("name") == "stdout"])
            assert text == EXPECTED
            assert any(drops)  # the link was cut while the cell streamed
        finally:
            session.stop()
