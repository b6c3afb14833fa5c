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
