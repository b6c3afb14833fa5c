"""What a board may show (issue 20.5): only cell output, checked, and no script unless trusted."""

from __future__ import annotations

import pytest
from helpers import KernelSession, start_board
from hostile_board import forged_output_cell

from rpyc_ikernel.outputs import NOT_SHOWN, check_bundle, is_active


def _all_messages(session: KernelSession, code: str) -> tuple[dict, list]:
    """The execute_reply and every IOPub message of the cell (status included), in order."""
    messages = []
    reply = session.client.execute_interactive(code, timeout=60, output_hook=messages.append)
    return reply["content"], messages


@pytest.fixture(scope="module")
def forger(kernelspec_prefix):
    server = start_board()
    session = KernelSession.start(board_port=server.port)
    yield session, server
    session.stop()
    server.stop()


def test_a_board_publishes_only_cell_output_and_no_script_by_default(forger):
    session, _ = forger
    reply, messages = _all_messages(session, forged_output_cell())
    assert reply["status"] == "ok"
    types = [m["msg_type"] for m in messages]
    assert set(types) <= {"status", "execute_input", "stream", "display_data"}, types
    idles = [m for m in messages if m["msg_type"] == "status" and m["content"]["execution_state"] == "idle"]
    assert len(idles) == 1 and messages[-1] is idles[0]  # only the kernel's own, at the end
    stderr = "".join(
        m["content"]["text"]
        for m in messages
        if m["msg_type"] == "stream" and m["content"]["name"] == "stderr"
    )
    assert "dropped board output: the board sent a message of type 'comm_open'" in stderr
    assert "'made_up'" in stderr and "names no stream" in stderr
    displays = [m["content"]["data"] for m in messages if m["msg_type"] == "display_data"]
    assert displays[0] == {"text/plain": NOT_SHOWN}  # script and onerror HTML left out
    assert displays[1] == {
        "text/html": "<b>bold</b>",
        "application/vnd.plotly.v1+json": {"data": [{"y": [1, 2]}]},
    }
    assert "after" in "".join(m["content"]["text"] for m in messages if m["msg_type"] == "stream")


def test_a_trusted_board_shows_its_script(forger):
    session, server = forger
    cell = session.run(f'# exec(self.connect_remote("127.0.0.1", port={server.port}, trusted=True))')
    assert cell.status == "ok", cell.error
    reply, messages = _all_messages(session, forged_output_cell())
    displays = [m["content"]["data"] for m in messages if m["msg_type"] == "display_data"]
    assert displays[0] == {"application/javascript": "alert(1)", "text/html": "<img src=x onerror=alert(1)>"}
    assert "comm_open" not in [m["msg_type"] for m in messages]  # trust is about rich output, not messages
    cell = session.run(f'# exec(self.connect_remote("127.0.0.1", port={server.port}))')
    assert cell.status == "ok", cell.error


@pytest.mark.parametrize(
    "markup",
    [
        "<script>alert(1)</script>",
        "<SCRIPT src=//x></SCRIPT>",
        "<img src=x onerror=alert(1)>",
        "<svg/onload=alert(1)>",
        '<a href="jav&#x61;script:alert(1)">x</a>',
        '<a href="java\tscript:alert(1)">x</a>',
        '<iframe srcdoc="<script>alert(1)</script>"></iframe>',
        '<object data="data:text/html,<script>alert(1)</script>"></object>',
        '<meta http-equiv="refresh" content="0;url=javascript:alert(1)">',
        '<form action="x"><button formaction="javascript:alert(1)">x</button></form>',
    ],
)
def test_active_markup_is_recognised(markup):
    assert is_active(markup)
    data, _ = check_bundle({"text/html": markup, "text/plain": "t"}, {}, trusted=False)
    assert data == {"text/plain": "t"}


def test_plain_rich_output_is_kept():
    table = '<style scoped>.x{color:red}</style><table class="dataframe"><tr><td>1</td></tr></table>'
    svg = '<svg xmlns="http://www.w3.org/2000/svg"><circle r="4"/></svg>'
    for markup in (table, svg, "<b>on the board: time=3</b>", "**markdown** [link](https://example.org)"):
        assert not is_active(markup), markup


def test_a_board_s_completion_reply_is_rebuilt_from_checked_fields():
    """complete_reply goes to the browser as the kernel builds it, never as the board sent it."""
    from rpyc_ikernel.kernel import _checked_completions
    from rpyc_ikernel.outputs import BadOutput

    sent = {
        "status": "ok",
        "matches": ["abc"],
        "cursor_start": -5,
        "cursor_end": 99,
        "metadata": {
            "_jupyter_types_experimental": [
                {"start": 0, "end": 3, "text": "abc", "type": "function", "html": "<script>x()</script>"},
                "not an entry",
            ],
            "injected": {"application/javascript": "x()"},
        },
        "extra": "field",
    }
    assert _checked_completions(sent, 3) == {
        "status": "ok",
        "matches": ["abc"],
        "cursor_start": 0,
        "cursor_end": 3,
        "metadata": {
            "_jupyter_types_experimental": [{"start": 0, "end": 3, "text": "abc", "type": "function"}]
        },
    }
    for bad in ({"matches": [1], "cursor_start": 0, "cursor_end": 0}, {"matches": "abc"}, []):
        with pytest.raises(BadOutput):
            _checked_completions(bad, 3)


def test_a_rich_variable_from_the_debugger_is_checked_like_cell_output():
    """richInspectVariables shows the board's value rendered: script is left out as in a cell."""
    import asyncio

    from rpyc_ikernel.debugger import DebugAdapter

    def board(command: str, arguments: dict) -> dict:
        html = "<b>ok</b><script>steal()</script>"
        return {"success": True, "body": {"data": {"text/plain": "v", "text/html": html}, "metadata": {}}}

    adapter = DebugAdapter(board, lambda event: None, check_bundle=lambda d, m: check_bundle(d, m, False))
    adapter.started = True
    request = {
        "seq": 1,
        "type": "request",
        "command": "richInspectVariables",
        "arguments": {"variableName": "v"},
    }
    reply = asyncio.run(adapter.process_request(request))
    assert reply["success"] is True
    assert "text/html" not in reply["body"]["data"] and reply["body"]["data"]["text/plain"].startswith("v")
