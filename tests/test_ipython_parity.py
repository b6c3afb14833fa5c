"""Behaviour as the stock IPython kernel has it, where the board allows: protocol, completion, magics."""

from __future__ import annotations


def test_kernel_info_advertises_no_debugger(ours):
    """kernel.json says debugger false; a front end believing the reply would start debugpy in the kernel."""
    msg_id = ours.client.kernel_info()
    reply = ours.client.get_shell_msg(timeout=30)
    while reply["parent_header"].get("msg_id") != msg_id:
        reply = ours.client.get_shell_msg(timeout=30)
    assert "debugger" not in reply["content"]["supported_features"]
    assert "kernel subshells" in reply["content"]["supported_features"]


def test_debug_request_is_refused_in_one_line(ours):
    """A debug_request sent anyway answers success false; no debugpy starts in the kernel process."""
    msg = ours.client.session.msg("debug_request", {"type": "request", "seq": 1, "command": "initialize"})
    ours.client.control_channel.send(msg)
    reply = ours.client.get_control_msg(timeout=30)
    while reply["parent_header"].get("msg_id") != msg["header"]["msg_id"]:
        reply = ours.client.get_control_msg(timeout=30)
    assert reply["content"]["success"] is False
    assert "debugger" in reply["content"]["message"]


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
