"""Behaviour as the stock IPython kernel has it, where the board allows: protocol, completion, magics."""

from __future__ import annotations

import json
import time

import pytest


def test_kernel_info_and_kernel_json_agree_on_the_debugger(ours, kernelspec_prefix):
    """A front end believes either: the reply advertises the debugger exactly when kernel.json does (a
    board that cannot debug would drop it from both the reply and, through the one-line error, the UI)."""
    msg_id = ours.client.kernel_info()
    reply = ours.client.get_shell_msg(timeout=30)
    while reply["parent_header"].get("msg_id") != msg_id:
        reply = ours.client.get_shell_msg(timeout=30)
    spec = json.loads(
        (kernelspec_prefix / "share" / "jupyter" / "kernels" / "rpyc" / "kernel.json").read_text()
    )
    assert ("debugger" in reply["content"]["supported_features"]) == spec["metadata"]["debugger"] is True
    assert "kernel subshells" in reply["content"]["supported_features"]


def test_a_debug_request_is_answered_by_the_board_not_by_debugpy_in_the_kernel(ours):
    """ipykernel would start debugpy in the kernel process, where no cell runs; ours asks the board."""

    def debug(command: str) -> dict:
        msg = ours.client.session.msg("debug_request", {"type": "request", "seq": 1, "command": command})
        ours.client.control_channel.send(msg)
        reply = ours.client.get_control_msg(timeout=30)
        while reply["parent_header"].get("msg_id") != msg["header"]["msg_id"]:
            reply = ours.client.get_control_msg(timeout=30)
        return reply["content"]

    try:
        assert debug("initialize")["success"] is True
        started = ours.run(
            "# exec(print(self.debug_adapter.started, getattr(self.debugger, 'is_started', False)))"
        )
        assert started.stream() == "True False\n"  # ours started; ipykernel's debugpy client did not
    finally:
        debug("disconnect")  # the module's kernel goes on without the debugger


def test_silent_cell_leaves_count_history_and_underscore_alone(ours):
    ours.run("40 + 2")
    before = ours.run("pass").reply["execution_count"]
    silent = ours.client.execute_interactive("7 * 6 + 1000", silent=True, timeout=60)["content"]
    assert silent["execution_count"] == before
    assert ours.run(f"print(_, len(In) - 1 == {before} + 1)").stream() == "42 True\n"


def test_in_out_and_underscores_as_ipython(ours):
    first = ours.run("'a'")
    n = first.reply["execution_count"]
    ours.run("'b'")
    ours.run("x = 1")  # no result: _ stays
    out = ours.run(f"print(_, __, _{n}, Out[{n}], In[{n}], _i{n})").stream()
    assert out == "b a a a 'a' 'a'\n"
    ours.run("_ = 'mine'")
    ours.run("'c'")
    assert ours.run("print(_)").stream() == "mine\n"  # IPython leaves a user's `_` alone


def test_set_next_input_gives_one_payload(ours):
    reply = ours.run(
        "ip = get_ipython()\nfor i in range(3):\n    ip.set_next_input('hello', replace=True)"
    ).reply
    assert reply["payload"] == [{"source": "set_next_input", "text": "hello", "replace": True}]


# --------------------------------------------------------------------------- bad input

HOSTILE = """
import time
class SlowDir:
    def __dir__(self):
        time.sleep(30)
        return ["late"]
class BadDir:
    def __dir__(self):
        raise RuntimeError("no dir")
class SlowAttr:
    def __getattr__(self, name):
        time.sleep(30)
class SlowRepr:
    def __repr__(self):
        time.sleep(30)
        return "late"
slow_dir, bad_dir, slow_attr, slow_repr = SlowDir(), BadDir(), SlowAttr(), SlowRepr()
"""


@pytest.mark.timeout(120)
def test_completion_and_inspection_of_hostile_objects_answer_quickly(ours):
    assert ours.run(HOSTILE).status == "ok"
    for text in ("slow_dir.", "bad_dir.", "slow_attr.x.", "slow_attr.x(a, ke", "slow_dir.x"):
        started = time.monotonic()
        reply = ours.request("complete", text, len(text))
        assert reply["status"] == "ok", text
        assert time.monotonic() - started < 5, text  # budget 0.2 s; the objects sleep 30 s
    for text in ("slow_repr", "slow_attr.x", "slow_dir"):
        started = time.monotonic()
        reply = ours.request("inspect", text, len(text), 0)
        assert reply["status"] == "ok", text
        assert time.monotonic() - started < 5, text
    for _ in range(10):  # repeated Tabs on a hanging object: no pile of stuck threads on the board
        ours.request("complete", "slow_dir.", 9)
    threads = ours.run(
        "import threading\nprint(sum(t.name == 'rpyc_ikernel completion' for t in threading.enumerate()))"
    )
    assert int(threads.stream()) <= 4
    assert ours.run("1 + 1").result["text/plain"] == "2"


@pytest.mark.timeout(120)
def test_completion_beside_a_running_cell_leaves_it_alone(ours):
    """From a subshell while a cell runs: a hanging __dir__ gives partial results, the cell goes on."""
    subshell = ours.create_subshell()
    code = "import time\nfor i in range(3):\n    time.sleep(0.5)\n    print(i)"
    outputs = []
    cell = ours.send("execute_request", {"code": code, "silent": False})
    time.sleep(0.3)
    asked = ours.send("complete_request", {"code": "slow_dir.", "cursor_pos": 9}, subshell_id=subshell)
    assert ours.wait_reply(asked, timeout=30)["content"]["status"] == "ok"
    assert ours.wait_reply(cell, timeout=60)["content"]["status"] == "ok"
    while True:
        msg = ours.client.get_iopub_msg(timeout=30)
        if msg["parent_header"].get("msg_id") != cell:
            continue
        if msg["msg_type"] == "stream":
            outputs.append(msg["content"]["text"])
        if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            break
    assert "".join(outputs) == "0\n1\n2\n"


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    "text",
    [
        "a" * 1_000_000,
        "x = " + "(" * 100_000 + "ab",
        "s = '" + "a." * 300_000,
        "f(" * 1000 + "d['",
        'x = """abc',
        "d[\"al'",
        "func((((",
        "print('x', se",
        ")]}",
        "\\",
    ],
)
def test_unbalanced_and_huge_input_get_an_answer(ours, text):
    for request in ("complete", "inspect"):
        args = (text, len(text)) if request == "complete" else (text, len(text), 0)
        assert ours.request(request, *args)["status"] == "ok"


@pytest.mark.timeout(120)
def test_invalid_utf8_from_the_board(ours, tmp_path):
    (tmp_path / "bad\udcff".encode("utf-8", "surrogateescape").decode("utf-8", "surrogateescape")).write_text(
        "1"
    )
    out = ours.run("import os, sys\nsys.stdout.flush(); os.write(1, b'A\\xffB\\n')\nprint('after')")
    assert out.status == "ok"
    assert "after" in out.stream()
    text = f'open("{tmp_path}/ba'
    reply = ours.request("complete", text, len(text))
    assert reply["status"] == "ok"
    assert ours.run("1 + 1").result["text/plain"] == "2"


@pytest.mark.timeout(120)
def test_lone_surrogates_in_board_text(ours):
    """Text the board cannot encode (a file name's undecodable bytes) reaches the notebook, kernel alive."""
    cell = ours.run('s = "a\\udcffb"\nprint(s)\nimport sys; print(s, file=sys.stderr)\ns')
    assert cell.status == "ok"
    assert cell.stream().startswith("a") and cell.result["text/plain"].startswith("'a")
    assert ours.request("complete", "s.up", 4)["status"] == "ok"
    assert ours.run("1 + 1").result["text/plain"] == "2"


def test_asyncio_and_top_level_await_as_ipython(ours, stock):
    """IPython's autoawait: `await` at the top of a cell runs on an event loop (Python 3.8+ boards)."""
    code = "import asyncio\nasync def twice(x):\n    await asyncio.sleep(0.01)\n    return 2 * x\n"
    code += "await twice(21)"
    for session in (ours, stock):
        cell = session.run(code)
        assert cell.status == "ok", cell.error
        assert cell.result["text/plain"] == "42"
    assert ours.run("%time await twice(1)").result["text/plain"] == "2"


def test_module_names_follow_sys_path_and_new_packages(ours, tmp_path):
    """`import` completion lists sys.path without importing; a new directory or package shows at once."""
    (tmp_path / "parity_pkg_one").mkdir()
    (tmp_path / "parity_pkg_one" / "__init__.py").write_text("raise RuntimeError('imported!')\n")
    assert "parity_pkg_one" not in ours.request("complete", "import parity_pkg", 17)["matches"]
    assert ours.run(f"import sys\nsys.path.append({str(tmp_path)!r})").status == "ok"
    assert "parity_pkg_one" in ours.request("complete", "import parity_pkg", 17)["matches"]
    (tmp_path / "parity_pkg_two.py").write_text("late = 1\n")
    matches = ours.request("complete", "import parity_pkg", 17)["matches"]
    assert {"parity_pkg_one", "parity_pkg_two"} <= set(matches)
    assert ours.run("print('parity_pkg_one' in sys.modules)").stream() == "False\n"
    assert ours.run(f"sys.path.remove({str(tmp_path)!r})").status == "ok"
