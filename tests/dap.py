"""A DAP client over a kernel's control channel, as JupyterLab's debugger speaks it (for tests)."""

from __future__ import annotations

import itertools
import time

_seq = itertools.count(1)


def debug(kernel, command: str, arguments: dict | None = None) -> dict:
    """Send one debug_request on the control channel; its debug_reply content."""
    client = kernel.client
    msg = client.session.msg(
        "debug_request",
        {"type": "request", "seq": next(_seq), "command": command, "arguments": arguments or {}},
    )
    client.control_channel.send(msg)
    while True:
        reply = client.get_control_msg(timeout=30)
        if reply["parent_header"].get("msg_id") == msg["header"]["msg_id"]:
            return reply["content"]


def wait_event(kernel, event: str, timeout: float = 30) -> dict:
    """The next debug_event `event` on iopub (other messages are skipped)."""
    deadline = time.monotonic() + timeout
    while True:
        msg = kernel.client.get_iopub_msg(timeout=max(0.01, deadline - time.monotonic()))
        if msg["msg_type"] == "debug_event" and msg["content"].get("event") == event:
            return msg["content"]


def wait_reply(kernel, msg_id: str, timeout: float = 30) -> dict:
    return kernel.wait_reply(msg_id, timeout)["content"]


def set_breakpoints(kernel, code: str, *lines: int) -> str:
    path = debug(kernel, "dumpCell", {"code": code})["body"]["sourcePath"]
    reply = debug(
        kernel, "setBreakpoints", {"source": {"path": path}, "breakpoints": [{"line": n} for n in lines]}
    )
    assert reply["success"], reply
    assert debug(kernel, "configurationDone")["success"]
    return path


def variables_of(kernel, frame_id: int, scope: str = "Locals") -> dict:
    scopes = debug(kernel, "scopes", {"frameId": frame_id})["body"]["scopes"]
    reference = next(s["variablesReference"] for s in scopes if s["name"] == scope)
    listed = debug(kernel, "variables", {"variablesReference": reference})["body"]["variables"]
    return {v["name"]: v for v in listed}
