"""Cells run on the board like IPython runs them: output, results, errors, namespace, counts."""

from __future__ import annotations

import base64
import os
import sys
import time

import pytest
from helpers import KernelSession, free_port, start_board


def test_code_runs_in_the_board_process_not_the_kernel(kernel, board):
    cell = kernel.run("import os\nprint(os.getpid())")
    assert cell.status == "ok"
    assert int(cell.stream()) == board.process.pid


def test_variables_persist_and_last_expression_is_the_result(kernel):
    assert kernel.run("total = 40").status == "ok"
    cell = kernel.run("total += 2\ntotal")
    assert cell.result == {"text/plain": "42"}


def test_result_is_hidden_by_trailing_semicolon_and_none(kernel):
    assert kernel.run("1 + 1;").result is None
    assert kernel.run("None").result is None
    assert kernel.run("x = 5").result is None


def test_execution_count_increments_like_ipython(kernel):
    first = kernel.run("1").reply["execution_count"]
    second = kernel.run("2").reply["execution_count"]
    error = kernel.run("1/0").reply["execution_count"]
    assert second == first + 1 and error == second + 1
    silent = kernel.run("3", silent=True, store_history=False).reply["execution_count"]
    assert kernel.run("4").reply["execution_count"] == error + 1
    assert silent == error


def test_stdout_and_stderr_keep_their_order_and_partial_lines(kernel):
    cell = kernel.run(
        "import sys\n"
        "print('a', end='')\n"
        "print('b', file=sys.stderr)\n"
        "print('c', end='')\n"
        "sys.stdout.write('d')\n"
    )
    streams = [
        (m["content"]["name"], m["content"]["text"]) for m in cell.outputs if m["msg_type"] == "stream"
    ]
    assert streams == [("stdout", "a"), ("stderr", "b\n"), ("stdout", "cd")]


def test_output_streams_while_the_cell_runs(kernel):
    arrivals = []

    def stamp(msg):
        if msg["msg_type"] == "stream":
            arrivals.append((time.monotonic(), msg["content"]["text"]))

    start = time.monotonic()
    reply = kernel.client.execute_interactive(
        "import time\nprint('early', flush=True)\ntime.sleep(1.5)\nprint('late')",
        timeout=30,
        output_hook=stamp,
    )
    end = time.monotonic()
    assert reply["content"]["status"] == "ok"
    assert [text for _, text in arrivals] == ["early\n", "late\n"]
    # 'early' arrived long before the cell ended: it was not held back until the end.
    assert arrivals[0][0] - start < (end - start) - 1.0


def test_many_prints_are_batched_and_arrive_whole(kernel):
    cell = kernel.run("for i in range(20000):\n    print(i)")
    assert cell.stream() == "".join(f"{i}\n" for i in range(20000))
    # batching: far fewer messages than lines
    assert len(cell.of_type("stream")) < 200


def test_quiet_cell_costs_one_round_trip(kernel):
    kernel.run("pass")
    count = "import sys\nsum(s.requests for s in sys.modules['_rpyc_ikernel_agent'].SESSIONS.values())"
    before = int(kernel.run(count).result["text/plain"])
    kernel.run("y = sum(range(1000))")
    after = int(kernel.run(count).result["text/plain"])
    # the counting cell itself is one request, the quiet cell another
    assert after - before == 2


def test_board_error_gives_traceback_from_the_board(kernel):
    cell = kernel.run("def inner():\n    raise KeyError('missing')\n\ninner()")
    assert cell.status == "error"
    assert cell.reply["ename"] == "KeyError"
    assert cell.reply["evalue"] == "'missing'"
    text = "\n".join(cell.error["traceback"])
    assert "inner()" in text and "raise KeyError('missing')" in text and "<cell-" in text
    assert "agent" not in text  # the helper's own frames are hidden


def test_syntax_error_points_at_the_line(kernel):
    cell = kernel.run("a = 1\nb = (2 +\nc = 3")
    assert cell.status == "error"
    assert cell.reply["ename"] == "SyntaxError"
    text = "\n".join(cell.error["traceback"])
    assert "line 2" in text or "line 3" in text
    assert "^" in text


def test_system_exit_does_not_stop_the_board(kernel):
    cell = kernel.run("import sys\nsys.exit(3)")
    assert cell.reply["ename"] == "SystemExit"
    assert kernel.run("'still here'").result == {"text/plain": "'still here'"}


def test_rich_reprs_html_and_pil_image(kernel):
    cell = kernel.run("class Card:\n    def _repr_html_(self):\n        return '<i>card</i>'\nCard()")
    assert cell.result["text/html"] == "<i>card</i>"
    assert "text/plain" in cell.result
    pytest.importorskip("PIL")
    cell = kernel.run("from PIL import Image\nImage.new('RGB', (8, 4), 'red')")
    png = base64.b64decode(cell.result["image/png"])
    assert png.startswith(b"\x89PNG")


def test_mimebundle_and_json_reprs(kernel):
    cell = kernel.run(
        "class Both:\n"
        "    def _repr_mimebundle_(self, include=None, exclude=None):\n"
        "        return {'text/plain': 'both', 'application/json': {'a': [1, 2]}}\n"
        "Both()"
    )
    assert cell.result == {"text/plain": "both", "application/json": {"a": [1, 2]}}


def test_display_and_update_display_in_board_code(kernel):
    cell = kernel.run("h = display('first', display_id=True)\nprint('between')\nh.update('second')")
    kinds = [m["msg_type"] for m in cell.outputs]
    assert kinds == ["display_data", "stream", "update_display_data"]
    display_id = cell.outputs[0]["content"]["transient"]["display_id"]
    assert cell.outputs[2]["content"]["transient"]["display_id"] == display_id
    assert cell.outputs[2]["content"]["data"]["text/plain"] == "'second'"


def test_comment_only_and_empty_cells_succeed_without_a_board(kernelspec_prefix):
    session = KernelSession.start(board_port=free_port())  # nothing listens there
    try:
        for code in ("", "   ", "# just a comment\n# another", '# exec(print("local only"))'):
            cell = session.run(code)
            assert cell.status == "ok", code
        assert session.run('# exec(print("local only"))').stream() == "local only\n"
    finally:
        session.stop()


def test_local_command_runs_in_the_kernel_with_self(kernel, board):
    cell = kernel.run(
        '# exec(print(type(self).__name__, os.getpid() if "os" in dir() else "-"))\nprint("board")'
    )
    assert cell.stream() == "RPycKernel -\nboard\n"


def test_local_command_error_runs_no_board_code(kernel):
    kernel.run("marker = 'unchanged'")
    cell = kernel.run("# exec(self.no_such_command())\nmarker = 'changed'")
    assert cell.status == "error"
    assert cell.reply["ename"] == "AttributeError"
    assert "line 1" in cell.error["traceback"][0]
    assert kernel.run("marker").result == {"text/plain": "'unchanged'"}


def test_unknown_name_in_local_command(kernel):
    cell = kernel.run("# exec(frobnicate())")
    assert cell.reply["ename"] == "NameError"
    assert "frobnicate" in cell.reply["evalue"]


def test_a_string_that_looks_like_a_command_is_board_code(kernel):
    cell = kernel.run('text = """\n# exec(print("local"))\n"""\nprint(text.strip())')
    assert cell.stream() == '# exec(print("local"))\n'


def test_unreachable_board_fails_fast_then_a_later_cell_retries(kernelspec_prefix):
    port = free_port()
    session = KernelSession.start(board_port=port)
    server = None
    try:
        start = time.monotonic()
        cell = session.run("print('hi')")
        elapsed = time.monotonic() - start
        assert cell.status == "error"
        assert elapsed < 5
        message = cell.reply["evalue"]
        assert f"127.0.0.1:{port}" in message and "server.py --port" in message
        assert len(cell.error["traceback"]) == 1  # one line, no kernel-side stack
        assert session.run('# exec(print("kernel alive"))').stream() == "kernel alive\n"
        server = start_board(port=port)
        assert session.run("print('hi')").stream() == "hi\n"
    finally:
        session.stop()
        if server:
            server.stop()


def test_unroutable_board_times_out_within_five_seconds(kernelspec_prefix):
    # A listening socket that never accepts: the TCP handshake completes (backlog) but no rpyc answers.
    import socket

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(0)
    session = KernelSession.start(board_port=silent.getsockname()[1])
    try:
        start = time.monotonic()
        cell = session.run("1")
        assert cell.status == "error"
        assert time.monotonic() - start < 5
        assert "did not answer" in cell.reply["evalue"]
    finally:
        session.stop()
        silent.close()


def test_connect_remote_switches_boards(kernel):
    other = start_board()
    try:
        cell = kernel.run(
            f'# exec(self.connect_remote("127.0.0.1", port={other.port}))\nimport os\nos.getpid()'
        )
        assert "Connected to board 127.0.0.1:" in cell.stream()
        assert cell.result == {"text/plain": str(other.process.pid)}
    finally:
        other.stop()


def test_connect_remote_to_nothing_is_a_clear_error(kernel):
    cell = kernel.run(f'# exec(self.connect_remote("127.0.0.1", port={free_port()}))')
    assert cell.status == "error"
    assert cell.reply["ename"] == "BoardUnreachable"
    assert "cannot reach board" in cell.reply["evalue"]
    assert kernel.run("'old board still used'").status == "ok"


@pytest.mark.parametrize("classic", [False, True], ids=["SlaveService", "ClassicService"])
def test_plain_rpyc_board_without_rpyc_ikernel(kernelspec_prefix, tmp_path, classic):
    """The README's plain script (rpyc only, nothing of ours on the board) is a board too."""
    script = os.path.join(os.path.dirname(__file__), "plain_board.py")
    command = [sys.executable, script] + (["--classic"] if classic else [])
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    server = start_board(command=command, cwd=tmp_path, env=env)
    session = KernelSession.start(board_port=server.port)
    try:
        cell = session.run("import sys\nprint('rpyc_ikernel' in sys.modules)\n6 * 7")
        assert cell.stream() == "False\n"
        assert cell.result == {"text/plain": "42"}
        assert session.run("raise RuntimeError('plain')").reply["ename"] == "RuntimeError"
    finally:
        session.stop()
        server.stop()
