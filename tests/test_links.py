"""Slow and unreliable links (tests/linkemu.py between the kernel and a real board): what must hold.

Each test is about behaviour, never speed (benchmarks/links.py measures speed), with generous
timeouts.
"""

from __future__ import annotations

import signal
import threading
import time

import pytest
from helpers import LIVE_PRODUCER_CELL, KernelSession, interrupt_after, wait_for_iopub
from linkemu import LinkEmulator

from rpyc_ikernel.handshake import read_token_file
from rpyc_ikernel.liveimage import MAX_IN_FLIGHT, FlightWindow
from rpyc_ikernel.server import default_token_path

SLOW_RTT = 0.5
STREAM_CELL = (
    "import time\nfor i in range({count}):\n    print(i, flush=True)\n    time.sleep({pause})\n'done'"
)
IMAGE_CELL = (
    "import io\nfrom PIL import Image\nout = io.BytesIO()\n"
    "Image.new('RGB', (64, 48), (10, 200, 30)).save(out, 'JPEG')\nimg_buffer = out.getvalue()"
)


@pytest.fixture()
def slow_link(board):
    """The session's board behind a 500 ms RTT link."""
    with LinkEmulator(board.port, rtt=SLOW_RTT) as link:
        yield link


def run_timed(session: KernelSession, code: str, timeout: float) -> tuple[dict, list]:
    """Run a cell; (execute_reply content, [(seconds since the request, IOPub message), ...])."""
    started = time.monotonic()
    outputs = []

    def keep(msg):
        if msg["msg_type"] not in ("status", "execute_input"):
            outputs.append((time.monotonic() - started, msg))

    reply = session.client.execute_interactive(code, timeout=timeout, output_hook=keep)
    return reply["content"], outputs


def stdout_of(outputs: list) -> str:
    return "".join(
        m["content"]["text"]
        for _, m in outputs
        if m["msg_type"] == "stream" and m["content"]["name"] == "stdout"
    )


def stderr_of(outputs: list) -> str:
    return "".join(
        m["content"]["text"]
        for _, m in outputs
        if m["msg_type"] == "stream" and m["content"]["name"] == "stderr"
    )


def check_every_feature(session: KernelSession) -> None:
    """A cell, streamed prints, completion, interrupt and a live image all work, with no timeout."""
    reply, outputs = run_timed(session, "feature_check = 41\nfeature_check + 1", timeout=120)
    assert reply["status"] == "ok", reply
    assert [m["content"]["data"] for _, m in outputs if m["msg_type"] == "execute_result"] == [
        {"text/plain": "42"}
    ]

    reply, outputs = run_timed(session, STREAM_CELL.format(count=8, pause=0.4), timeout=120)
    assert reply["status"] == "ok", reply
    assert stdout_of(outputs) == "".join(f"{i}\n" for i in range(8))
    first_line = next(t for t, m in outputs if m["msg_type"] == "stream")
    assert first_line < outputs[-1][0] - 1.5  # output as it happens, not all at the end

    matches = session.request("complete", "feature_ch", 10)["matches"]
    assert "feature_check" in matches

    msg_id = session.send("execute_request", {"code": "import time\ntime.sleep(60)", "silent": False})
    wait_for_iopub(session.client, msg_id, "execute_input", timeout=60)
    time.sleep(1.0)
    session.manager.interrupt_kernel()
    interrupted = session.wait_reply(msg_id, timeout=60)["content"]
    assert interrupted["ename"] == "KeyboardInterrupt", interrupted
    assert session.run("feature_check", timeout=120).result == {"text/plain": "41"}

    assert session.run(IMAGE_CELL, timeout=120).status == "ok"
    reply, outputs = run_timed(session, '# exec(self.display("img_buffer", interval=0.05))', timeout=120)
    assert reply["status"] == "ok", reply
    shown = [
        m["content"]["data"] for _, m in outputs if m["msg_type"] in ("display_data", "update_display_data")
    ]
    assert shown and "image/jpeg" in shown[-1], shown
    assert (
        session.run("# exec(self.stop_display())", timeout=60).stream() == "Stopped live image img_buffer\n"
    )
    assert "reconnected" not in stderr_of(outputs)


@pytest.mark.timeout(400)
def test_every_feature_works_over_a_500ms_rtt_link(kernelspec_prefix, slow_link):
    session = KernelSession.start(board_port=slow_link.port, env=slow_link.forward_env)
    try:
        check_every_feature(session)
    finally:
        session.stop()


@pytest.mark.timeout(400)
def test_every_feature_works_over_500ms_rtt_given_a_long_timeout_and_the_token(kernelspec_prefix, slow_link):
    """Today's workaround for a slow link (README: "give a slow link a larger timeout")."""
    token = read_token_file(default_token_path())
    session = KernelSession.start(board_port=slow_link.port, env=slow_link.forward_env)
    try:
        connect = (
            f'# exec(self.connect_remote("127.0.0.1", port={slow_link.port}, timeout=60, token={token!r}))'
        )
        reply, outputs = run_timed(session, connect, timeout=120)
        assert reply["status"] == "ok", reply
        assert "token" in stdout_of(outputs)
        check_every_feature(session)
    finally:
        session.stop()


@pytest.mark.timeout(180)
def test_a_ten_second_stall_mid_cell_recovers_without_losing_output(kernelspec_prefix, board):
    with LinkEmulator(board.port, rtt=0.02) as link:
        session = KernelSession.start(board_port=link.port, env=link.forward_env)
        try:
            assert session.run("1", timeout=60).status == "ok"
            threading.Timer(1.5, link.stall, args=(10.0,)).start()
            reply, outputs = run_timed(session, STREAM_CELL.format(count=70, pause=0.2), timeout=120)
            assert reply["status"] == "ok", reply
            assert stdout_of(outputs) == "".join(f"{i}\n" for i in range(70))
            results = [m["content"]["data"] for _, m in outputs if m["msg_type"] == "execute_result"]
            assert results == [{"text/plain": "'done'"}]
            notices = stderr_of(outputs)  # one line when the wait starts, one when the board is back
            assert notices.count("silent for") == 1 and notices.count("answers again") == 1, notices
            assert notices.count("\n") == 2 and "reconnected" not in notices, notices
            assert session.run("2", timeout=60).result == {"text/plain": "2"}
        finally:
            link.release()
            session.stop()


@pytest.mark.timeout(240)
def test_a_board_stopped_mid_result_ends_the_cell_with_one_line_and_the_next_cell_works(
    kernelspec_prefix, own_board
):
    with LinkEmulator(own_board.port, mbit=8) as link:  # 1 MB/s: the result takes several seconds
        session = KernelSession.start(board_port=link.port, env=link.forward_env)
        try:
            assert session.run("import base64, os", timeout=60).status == "ok"
            before = link.down.delivered
            msg_id = session.send(
                "execute_request",
                {"code": "base64.b64encode(os.urandom(6_000_000)).decode()", "silent": False},
            )
            deadline = time.monotonic() + 60
            while link.down.delivered - before < 1_000_000 and time.monotonic() < deadline:
                time.sleep(0.01)
            assert link.down.delivered - before >= 1_000_000, "the result never started to flow"
            own_board.process.send_signal(signal.SIGSTOP)  # the board stops mid-frame ...
            link.stall(direction="down")  # ... and what its socket buffers still hold stays there too
            stopped = time.monotonic()
            try:
                reply = session.wait_reply(msg_id, timeout=60)["content"]
            finally:
                waited = time.monotonic() - stopped
                own_board.process.send_signal(signal.SIGCONT)
                link.release()
            assert reply["status"] == "error"
            assert reply["ename"] in ("BoardConnectionLost", "BoardUnreachable")
            assert "\n" not in reply["evalue"] and str(link.port) in reply["evalue"]
            assert waited < 15  # README: a link silent for 12 s while an answer is due is dead
            after = session.run_after_error("1 + 1")
            assert after.result == {"text/plain": "2"}, after.reply
        finally:
            session.stop()


@pytest.mark.timeout(180)
def test_repeated_drops_mid_cell_lose_no_output(kernelspec_prefix, board):
    with LinkEmulator(board.port) as link:
        session = KernelSession.start(board_port=link.port, env=link.forward_env)
        try:
            assert session.run("1", timeout=60).status == "ok"
            stop = threading.Event()

            def drop_now_and_then():
                while not stop.wait(0.9):
                    link.drop_all()

            dropper = threading.Thread(target=drop_now_and_then, daemon=True)
            dropper.start()
            try:
                reply, outputs = run_timed(session, STREAM_CELL.format(count=40, pause=0.25), timeout=120)
            finally:
                stop.set()
                dropper.join()
            assert reply["status"] == "ok", reply
            assert stdout_of(outputs) == "".join(f"{i}\n" for i in range(40))
        finally:
            session.stop()


@pytest.mark.timeout(180)
def test_live_images_get_more_than_one_frame_per_round_trip(kernelspec_prefix, board):
    """Over a 200 ms RTT link one request per look gives at most 5 frames/s; pipelined, about 20."""
    rtt = 0.2
    with LinkEmulator(board.port, rtt=rtt) as link:
        session = KernelSession.start(board_port=link.port, env=link.forward_env)
        try:
            assert session.run("1", timeout=60).status == "ok"
            code = '# exec(self.display("img_buffer", interval=0.05))\n' + LIVE_PRODUCER_CELL.format(
                seconds=12
            )
            reply, outputs = run_timed(session, code, timeout=120)
            assert reply["status"] == "ok", reply
            updates = [t for t, m in outputs if m["msg_type"] == "update_display_data"]
            assert len(updates) > 20, len(updates)
            window = [t for t in updates if updates[0] + 3 <= t <= updates[0] + 9]  # past the ramp-up
            assert len(window) / 6 > 2 / rtt, f"{len(window) / 6:.1f} frames/s"
            session.run("# exec(self.stop_display())", timeout=60)
        finally:
            session.stop()


def test_flight_window_covers_the_round_trip_and_shrinks_when_answers_queue():
    window = FlightWindow()
    for _ in range(20):
        window.record(0.2, interval=0.05)
    assert window.size == 5  # ceil(0.2 / 0.05) + 1: a request leaves every interval
    window.record(0.2 + 0.06, interval=0.05)  # an answer queued more than one interval
    assert window.size == 4
    window.record(0.2 + 0.3, interval=0.05)
    assert window.size == 3
    window.record(0.2, interval=0.05)
    assert window.size == 3  # after queueing, one calm answer is not enough to grow
    window.record(0.2, interval=0.05)
    assert window.size == 4
    for _ in range(10):
        window.record(5.0, interval=0.05)  # a link far slower than the camera: one at a time
    assert window.size == 1
    assert MAX_IN_FLIGHT >= 7  # 300 ms at 20 frames/s


def test_flight_window_is_one_request_per_answer_flat_out():
    window = FlightWindow()
    for _ in range(5):
        window.record(0.3, interval=0.0)
    assert window.size == 1


@pytest.mark.timeout(240)
def test_an_interrupt_while_the_first_cell_connects_stops_that_cell_once_it_runs(kernelspec_prefix, board):
    """Ctrl-C while the kernel is still connecting (500 ms round trips: seconds) is neither lost nor
    raised inside ipykernel's handler (no reply at all): the silent loop starts, then stops."""
    with LinkEmulator(board.port, rtt=0.5) as link:
        session = KernelSession.start(board_port=link.port, env=link.forward_env)
        try:
            sent = interrupt_after(session.manager, 1.0)  # the connect takes several round trips
            cell = session.run("while True:\n    pass", timeout=120)
            assert cell.reply["ename"] == "KeyboardInterrupt", cell.reply
            assert time.monotonic() - sent["at"] < 60
            assert session.run("1 + 1", timeout=60).result == {"text/plain": "2"}
        finally:
            session.stop()
