"""JupyterLab's debugger on board code: DAP requests on the control channel, answered by the board.

Real board server, real kernel through jupyter_client; the requests are the ones JupyterLab sends.
Each test runs on two boards: this Python (bdb and sys.settrace below 3.12) and the pyenv-3.12 test
board (sys.monitoring), which scripts/boards.py builds (`python3 scripts/boards.py build pyenv-3.12`;
unbuilt, those tests skip, or fail under RPYC_IKERNEL_BOARDS_REQUIRED as in `make test`).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
from dap import debug, set_breakpoints, variables_of, wait_event, wait_reply
from helpers import REPO, start_board

pytestmark = pytest.mark.timeout(120)

MONITORING_BOARD = "pyenv-3.12"


@pytest.fixture(scope="module", params=["this-python", MONITORING_BOARD])
def board_command(request) -> list[str]:
    """How to start the board server: ours on this Python, or server.py alone on the 3.12 test board."""
    if request.param == "this-python":
        return [sys.executable, "-m", "rpyc_ikernel.server", "--host", "127.0.0.1"]
    sys.path.insert(0, str(REPO / "scripts"))
    import boards  # scripts/boards.py

    board = boards.board_named(request.param)
    if not board.built():
        why = f"board {board.name} is not built (python3 scripts/boards.py build {board.name})"
        if os.environ.get("RPYC_IKERNEL_BOARDS_REQUIRED"):
            pytest.fail(why)
        pytest.skip(why)
    return [board.python_exe, str(REPO / "rpyc_ikernel" / "server.py"), "--host", "127.0.0.1"]


@pytest.fixture(scope="module")
def monitoring(board_command) -> bool:
    """Whether the board's Python has sys.monitoring (3.12+): the debugger uses it there, not bdb's trace."""
    probe = "import sys; print(hasattr(sys, 'monitoring'))"
    out = subprocess.run([board_command[0], "-c", probe], capture_output=True, text=True, check=True)
    return out.stdout.strip() == "True"


def board_env() -> dict:
    """The board's environment: this run's (its token file), without our source on PYTHONPATH."""
    return {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}


@pytest.fixture(scope="module")
def board(board_command):
    """This module's board server (overrides conftest's): see board_command."""
    server = start_board(command=board_command, env=board_env())
    yield server
    server.stop()


@pytest.fixture()
def debugging(kernel):
    """A kernel whose debugger JupyterLab has started (initialize, attach, configurationDone)."""
    assert debug(kernel, "initialize", {"clientID": "test", "adapterID": "", "linesStartAt1": True})[
        "success"
    ]
    assert debug(kernel, "attach")["success"]
    yield kernel
    debug(kernel, "disconnect", {"restart": False, "terminateDebuggee": True})


def test_kernel_info_and_debug_info(kernel):
    kernel.client.kernel_info()
    info = kernel.client.get_shell_msg(timeout=30)["content"]
    assert "debugger" in info["supported_features"]
    body = debug(kernel, "debugInfo")["body"]
    assert body["hashMethod"] == "Murmur2" and body["tmpFileSuffix"] == ".py"
    assert body["isStarted"] is False
    path = debug(kernel, "dumpCell", {"code": "x = 1\n"})
    assert path == {}  # not started: as ipykernel, an empty reply


def test_breakpoint_in_cell_stops_and_shows_board_values(debugging):
    code = "import os\nboard_pid = os.getpid()\nitems = [1, 2, {'k': 'v'}]\ntotal = sum(items[:2])\n"
    path = set_breakpoints(debugging, code, 4)
    assert path.startswith(debug(debugging, "debugInfo")["body"]["tmpFilePrefix"])
    msg_id = debugging.client.execute(code)
    stopped = wait_event(debugging, "stopped")
    assert stopped["body"]["reason"] == "breakpoint"
    frames = debug(debugging, "stackTrace", {"threadId": stopped["body"]["threadId"]})["body"]["stackFrames"]
    assert frames[0]["line"] == 4 and frames[0]["source"]["path"] == path
    names = variables_of(debugging, frames[0]["id"], "Globals")
    kernel_pid = debugging.manager.provisioner.process.pid
    assert int(names["board_pid"]["value"]) != kernel_pid  # the board's value, not the laptop's
    assert "total" not in names  # line 4 has not run yet
    items = names["items"]
    assert items["value"] == "[1, 2, {'k': 'v'}]" and items["variablesReference"] > 0
    children = debug(debugging, "variables", {"variablesReference": items["variablesReference"]})["body"]
    assert [c["value"] for c in children["variables"]][:2] == ["1", "2"]
    evaluated = debug(debugging, "evaluate", {"expression": "items[2]['k'] * 2", "frameId": frames[0]["id"]})
    assert evaluated["body"]["result"] == "'vv'"
    assert debug(debugging, "continue", {"threadId": 1})["success"]
    reply = wait_reply(debugging, msg_id)
    assert reply["status"] == "ok"
    assert debugging.run("total").result == {"text/plain": "3"}


def test_breakpoint_in_function_of_an_earlier_cell_then_next_and_continue(debugging):
    define = "def scale(value):\n    doubled = value * 2\n    return doubled + 1\n"
    set_breakpoints(debugging, define, 2)
    assert debugging.run(define).status == "ok"
    msg_id = debugging.client.execute("result = scale(20)\nprint('after', result)\n")
    stopped = wait_event(debugging, "stopped")
    frames = debug(debugging, "stackTrace", {"threadId": 1})["body"]["stackFrames"]
    assert [f["name"] for f in frames[:2]] == ["scale", "<module>"] and frames[0]["line"] == 2
    assert variables_of(debugging, frames[0]["id"])["value"]["value"] == "20"
    assert stopped["body"]["reason"] == "breakpoint"
    assert debug(debugging, "next", {"threadId": 1})["success"]
    wait_event(debugging, "stopped")
    frames = debug(debugging, "stackTrace", {"threadId": 1})["body"]["stackFrames"]
    assert frames[0]["line"] == 3
    assert variables_of(debugging, frames[0]["id"])["doubled"]["value"] == "40"
    assert debug(debugging, "continue", {"threadId": 1})["success"]
    assert wait_reply(debugging, msg_id)["status"] == "ok"
    assert debugging.run("result").result == {"text/plain": "41"}


def test_interrupt_while_stopped_ends_the_cell_and_the_session_goes_on(debugging):
    code = "x = 5\ny = x + 1\n"
    set_breakpoints(debugging, code, 2)
    # (stop_on_error=False: ipykernel would abort a request that reaches it in the instant after the
    # error; the next cell is what this test is about)
    msg_id = debugging.client.execute(code, stop_on_error=False)
    wait_event(debugging, "stopped")
    debugging.manager.interrupt_kernel()
    reply = wait_reply(debugging, msg_id)
    assert reply["status"] == "error" and reply["ename"] == "KeyboardInterrupt"
    assert debugging.run("x * 10").result == {"text/plain": "50"}


def test_disconnect_lets_the_stopped_cell_run_on(kernel):
    assert debug(kernel, "initialize", {"clientID": "test", "adapterID": ""})["success"]
    assert debug(kernel, "attach")["success"]
    code = "a = 1\nb = a + 1\nprint('done', b)\n"
    set_breakpoints(kernel, code, 2)
    msg_id = kernel.client.execute(code)
    wait_event(kernel, "stopped")
    assert debug(kernel, "disconnect", {"restart": False})["success"]
    assert wait_reply(kernel, msg_id)["status"] == "ok"
    # off again: cells get their usual names, nothing is traced
    assert kernel.run("b").result == {"text/plain": "2"}
    assert debug(kernel, "debugInfo")["body"]["isStarted"] is False


def test_inspect_variables_while_not_stopped(debugging):
    assert debugging.run("board_list = list(range(500))\nname = 'board'").status == "ok"
    listed = {v["name"]: v for v in debug(debugging, "inspectVariables")["body"]["variables"]}
    assert listed["name"]["value"] == "'board'"
    assert "get_ipython" not in listed and "__builtins__" not in listed
    reference = listed["board_list"]["variablesReference"]
    page = debug(debugging, "variables", {"variablesReference": reference, "start": 100, "count": 10})
    assert [v["value"] for v in page["body"]["variables"]] == [str(n) for n in range(100, 110)]
    rich = debug(debugging, "richInspectVariables", {"variableName": "name"})
    assert rich["body"]["data"] == {"text/plain": "'board'"}


def test_breakpoint_set_while_the_cell_runs_stops_it(debugging):
    set_breakpoints(debugging, "unrelated = 1\n", 1)  # the debugger is on; nothing to hit yet
    code = "done = False\nspins = 0\nwhile not done:\n    spins += 1\n"
    path = debug(debugging, "dumpCell", {"code": code})["body"]["sourcePath"]
    msg_id = debugging.client.execute(code)
    time.sleep(1.0)  # the loop runs: its frame started before the breakpoint exists
    source = {"source": {"path": path}, "breakpoints": [{"line": 4}]}
    assert debug(debugging, "setBreakpoints", source)["success"]
    assert wait_event(debugging, "stopped")["body"]["reason"] == "breakpoint"
    frames = debug(debugging, "stackTrace", {"threadId": 1})["body"]["stackFrames"]
    assert (frames[0]["line"], frames[0]["source"]["path"]) == (4, path)
    debug(debugging, "setBreakpoints", {"source": {"path": path}, "breakpoints": []})
    debug(debugging, "evaluate", {"expression": "done = True", "frameId": frames[0]["id"], "context": "repl"})
    debug(debugging, "continue", {"threadId": 1})
    assert wait_reply(debugging, msg_id)["status"] == "ok"


def test_conditional_breakpoint(debugging):
    code = "hits = []\nfor i in range(10):\n    hits.append(i)\n"
    path = debug(debugging, "dumpCell", {"code": code})["body"]["sourcePath"]
    debug(
        debugging,
        "setBreakpoints",
        {"source": {"path": path}, "breakpoints": [{"line": 3, "condition": "i == 7"}]},
    )
    msg_id = debugging.client.execute(code)
    wait_event(debugging, "stopped")
    frames = debug(debugging, "stackTrace", {"threadId": 1})["body"]["stackFrames"]
    assert variables_of(debugging, frames[0]["id"])["i"]["value"] == "7"
    debug(debugging, "continue", {"threadId": 1})
    assert wait_reply(debugging, msg_id)["status"] == "ok"


def test_step_in_and_step_out(debugging):
    code = "def inner(x):\n    y = x + 1\n    return y\n\nr = inner(1)\nr2 = r * 2\n"
    set_breakpoints(debugging, code, 5)
    msg_id = debugging.client.execute(code)
    wait_event(debugging, "stopped")
    debug(debugging, "stepIn", {"threadId": 1})
    assert wait_event(debugging, "stopped")["body"]["reason"] == "step"
    frames = debug(debugging, "stackTrace", {"threadId": 1})["body"]["stackFrames"]
    assert (frames[0]["name"], frames[0]["line"]) == ("inner", 2)
    debug(debugging, "stepOut", {"threadId": 1})
    wait_event(debugging, "stopped")
    frames = debug(debugging, "stackTrace", {"threadId": 1})["body"]["stackFrames"]
    assert (frames[0]["name"], frames[0]["line"], len(frames)) == ("<module>", 5, 1)  # as debugpy
    debug(debugging, "next", {"threadId": 1})
    wait_event(debugging, "stopped")
    frames = debug(debugging, "stackTrace", {"threadId": 1})["body"]["stackFrames"]
    assert frames[0]["line"] == 6
    assert variables_of(debugging, frames[0]["id"], "Globals")["r"]["value"] == "2"
    debug(debugging, "continue", {"threadId": 1})
    assert wait_reply(debugging, msg_id)["status"] == "ok"


def test_next_out_of_a_function_that_raises_stops_in_the_caller(debugging):
    code = (
        "def fail():\n    raise ValueError('no')\n\ntry:\n    fail()\nexcept ValueError:\n"
        "    handled = True\n"
    )
    set_breakpoints(debugging, code, 2)
    msg_id = debugging.client.execute(code)
    wait_event(debugging, "stopped")
    debug(debugging, "next", {"threadId": 1})  # fail() leaves by the exception: as debugpy, stop in <module>
    assert wait_event(debugging, "stopped")["body"]["reason"] == "step"
    frames = debug(debugging, "stackTrace", {"threadId": 1})["body"]["stackFrames"]
    assert frames[0]["name"] == "<module>" and frames[0]["line"] in (5, 6)
    debug(debugging, "continue", {"threadId": 1})
    assert wait_reply(debugging, msg_id)["status"] == "ok"
    assert debugging.run("handled").result == {"text/plain": "True"}


def test_pause_stops_a_running_loop(debugging):
    set_breakpoints(debugging, "unrelated = 1\n", 1)  # the debugger is on; nothing to hit in the loop
    msg_id = debugging.client.execute("done = False\nspins = 0\nwhile not done:\n    spins += 1\n")
    time.sleep(1.0)
    assert debug(debugging, "pause", {"threadId": 1})["success"]
    assert wait_event(debugging, "stopped")["body"]["reason"] == "pause"
    frames = debug(debugging, "stackTrace", {"threadId": 1})["body"]["stackFrames"]
    assert frames[0]["line"] in (3, 4)
    debug(debugging, "evaluate", {"expression": "done = True", "frameId": frames[0]["id"], "context": "repl"})
    debug(debugging, "continue", {"threadId": 1})
    assert wait_reply(debugging, msg_id)["status"] == "ok"
    assert int(debugging.run("spins").result["text/plain"]) > 0


def test_break_on_uncaught_and_raised_exceptions(debugging):
    assert debug(debugging, "setExceptionBreakpoints", {"filters": ["uncaught"]})["success"]
    msg_id = debugging.client.execute("def fail(v):\n    return 1 / v\n\nfail(0)\n")
    stopped = wait_event(debugging, "stopped")
    assert stopped["body"]["reason"] == "exception" and "ZeroDivisionError" in stopped["body"]["text"]
    frames = debug(debugging, "stackTrace", {"threadId": 1})["body"]["stackFrames"]
    assert (frames[0]["name"], frames[0]["line"]) == ("fail", 2)
    assert variables_of(debugging, frames[0]["id"])["v"]["value"] == "0"
    debug(debugging, "continue", {"threadId": 1})
    reply = wait_reply(debugging, msg_id)
    assert reply["ename"] == "ZeroDivisionError"
    assert 'File "<cell-' in "\n".join(reply["traceback"])  # as without the debugger, not the file name
    # raised (and caught) exceptions stop where they are raised, in code the debugger traces
    code = "try:\n    {}['missing']\nexcept KeyError:\n    caught = True\n"
    set_breakpoints(debugging, code, 4)
    debug(debugging, "setExceptionBreakpoints", {"filters": ["raised"]})
    msg_id = debugging.client.execute(code)
    stopped = wait_event(debugging, "stopped")
    assert stopped["body"]["reason"] == "exception" and "KeyError" in stopped["body"]["text"]
    debug(debugging, "continue", {"threadId": 1})
    assert wait_event(debugging, "stopped")["body"]["reason"] == "breakpoint"
    debug(debugging, "continue", {"threadId": 1})
    assert wait_reply(debugging, msg_id)["status"] == "ok"


def test_output_before_the_stop_is_shown_before_it(debugging):
    code = "print('before the stop')\nx = 1\nprint('after')\n"
    set_breakpoints(debugging, code, 2)
    msg_id = debugging.client.execute(code)
    seen = []
    while True:
        msg = debugging.client.get_iopub_msg(timeout=30)
        if msg["msg_type"] == "stream":
            seen.append(msg["content"]["text"])
        if msg["msg_type"] == "debug_event" and msg["content"]["event"] == "stopped":
            break
    assert "".join(seen) == "before the stop\n"
    debug(debugging, "continue", {"threadId": 1})
    assert wait_reply(debugging, msg_id)["status"] == "ok"


def test_two_kernels_on_one_board_keep_their_own_breakpoints(debugging, board, tmp_path):
    from helpers import KernelSession

    other = KernelSession.start(board_port=board.port)
    try:
        assert debug(other, "initialize", {"clientID": "other", "adapterID": ""})["success"]
        assert debug(other, "attach")["success"]
        code = "shared = 1\nshared += 1\n"
        set_breakpoints(debugging, code, 2)  # in the first kernel only
        assert other.run(code).status == "ok"  # the other kernel's cell runs through
        msg_id = debugging.client.execute(code)
        wait_event(debugging, "stopped")
        debug(debugging, "continue", {"threadId": 1})
        assert wait_reply(debugging, msg_id)["status"] == "ok"
        # one module file on the board, imported by both: a breakpoint in it is the first kernel's only
        module = tmp_path / "shared_module.py"
        module.write_text("def work(n):\n    doubled = n * 2\n    return doubled\n")
        load = f"import sys\nsys.path.insert(0, {str(tmp_path)!r})\nimport shared_module\n"
        assert debugging.run(load).status == "ok" and other.run(load).status == "ok"
        source = {"source": {"path": str(module)}, "breakpoints": [{"line": 2}]}
        assert debug(debugging, "setBreakpoints", source)["success"]
        assert other.run("seen = shared_module.work(1)").status == "ok"  # not stopped
        msg_id = debugging.client.execute("seen = shared_module.work(2)")
        assert wait_event(debugging, "stopped")["body"]["reason"] == "breakpoint"
        frames = debug(debugging, "stackTrace", {"threadId": 1})["body"]["stackFrames"]
        assert (frames[0]["name"], frames[0]["source"]["path"]) == ("work", str(module))
        debug(debugging, "continue", {"threadId": 1})
        assert wait_reply(debugging, msg_id)["status"] == "ok"
        assert other.run("seen").result == {"text/plain": "2"}
    finally:
        other.stop()


def test_debugger_on_the_plain_rpyc_board(plain):
    """The README's plain SlaveService server: cells run in a thread of their own, debugged the same."""
    assert debug(plain, "initialize", {"clientID": "test", "adapterID": ""})["success"]
    assert debug(plain, "attach")["success"]
    try:
        code = "p = 6\nq = p * 7\nr = q + 1\n"
        set_breakpoints(plain, code, 2)
        msg_id = plain.client.execute(code)
        wait_event(plain, "stopped")
        frames = debug(plain, "stackTrace", {"threadId": 1})["body"]["stackFrames"]
        assert variables_of(plain, frames[0]["id"], "Globals")["p"]["value"] == "6"
        debug(plain, "next", {"threadId": 1})
        wait_event(plain, "stopped")
        frames = debug(plain, "stackTrace", {"threadId": 1})["body"]["stackFrames"]
        assert frames[0]["line"] == 3
        debug(plain, "continue", {"threadId": 1})
        assert wait_reply(plain, msg_id)["status"] == "ok"
        assert plain.run("q").result == {"text/plain": "42"}
    finally:
        debug(plain, "disconnect", {"restart": False})


def test_board_restart_while_stopped_says_so_and_the_breakpoints_come_back(kernelspec_prefix, board_command):
    from helpers import KernelSession

    server = start_board(command=board_command, env=board_env())
    kernel = KernelSession.start(board_port=server.port)
    try:
        assert debug(kernel, "initialize", {"clientID": "test", "adapterID": ""})["success"]
        assert debug(kernel, "attach")["success"]
        code = "w = 1\nw += 1\n"
        set_breakpoints(kernel, code, 2)
        msg_id = kernel.client.execute(code)
        wait_event(kernel, "stopped")
        server.stop()  # the board dies while the cell is stopped
        server = start_board(command=board_command, port=server.port, env=board_env())
        reply = wait_reply(kernel, msg_id, timeout=60)
        assert reply["status"] == "error" and len(reply["traceback"]) == 1, reply
        assert debug(kernel, "debugInfo")["body"]["stoppedThreads"] == []
        # the restarted board gets the breakpoints again: the same cell stops again
        msg_id = kernel.client.execute(code)
        wait_event(kernel, "stopped")
        debug(kernel, "continue", {"threadId": 1})
        assert wait_reply(kernel, msg_id)["status"] == "ok"
    finally:
        kernel.stop()
        server.stop()


def test_input_while_debugging(debugging):
    code = "name = input('Name? ')\nshout = name.upper()\n"
    set_breakpoints(debugging, code, 2)
    msg_id = debugging.client.execute(code, allow_stdin=True)
    request = debugging.client.get_stdin_msg(timeout=30)
    assert request["content"]["prompt"] == "Name? "
    debugging.client.input("board")
    wait_event(debugging, "stopped")
    frames = debug(debugging, "stackTrace", {"threadId": 1})["body"]["stackFrames"]
    assert variables_of(debugging, frames[0]["id"], "Globals")["name"]["value"] == "'board'"
    debug(debugging, "continue", {"threadId": 1})
    assert wait_reply(debugging, msg_id)["status"] == "ok"
    assert debugging.run("shout").result == {"text/plain": "'BOARD'"}


def test_live_image_keeps_updating_while_stopped(debugging):
    import base64
    import io

    from PIL import Image

    def png(color) -> bytes:
        out = io.BytesIO()
        Image.new("RGB", (8, 8), color).save(out, "PNG")
        return out.getvalue()

    red, blue = png((220, 0, 0)), png((0, 0, 220))
    assert debugging.run(f"img_buffer = {red!r}").status == "ok"
    assert debugging.run('# exec(self.display("img_buffer", interval=0.05))').status == "ok"
    code = f"img_buffer = {blue!r}\nafter = 1\n"
    set_breakpoints(debugging, code, 2)
    msg_id = debugging.client.execute(code)
    wait_event(debugging, "stopped")
    deadline = time.monotonic() + 20
    shown = None
    while time.monotonic() < deadline and shown != blue:  # the board is stopped: the frame still comes
        msg = debugging.client.get_iopub_msg(timeout=max(0.01, deadline - time.monotonic()))
        if msg["msg_type"] in ("display_data", "update_display_data"):
            shown = base64.b64decode(msg["content"]["data"].get("image/png", ""))
    assert shown == blue
    debug(debugging, "continue", {"threadId": 1})
    assert wait_reply(debugging, msg_id)["status"] == "ok"
    debugging.run("# exec(self.stop_display())")


def test_top_level_await_runs_while_debugging_and_stops_at_a_breakpoint(debugging):
    """A cell that awaits (IPython's autoawait, Python 3.8+ boards) runs under the debugger too."""
    code = (
        "import asyncio\nawait asyncio.sleep(0.01)\nanswer = 6 * 7\nawait asyncio.sleep(0, result=answer)\n"
    )
    set_breakpoints(debugging, code, 3)
    msg_id = debugging.client.execute(code)
    assert wait_event(debugging, "stopped")["body"]["reason"] == "breakpoint"
    assert debug(debugging, "continue", {"threadId": 1})["success"]
    assert wait_reply(debugging, msg_id)["status"] == "ok"
    assert debugging.run("await asyncio.sleep(0, result=answer)").result == {"text/plain": "42"}


def test_raised_exceptions_stop_in_any_user_code_on_sys_monitoring(debugging, monitoring):
    """With sys.monitoring (3.12+) "Raised Exceptions" stops in user code without breakpoints too;
    exceptions raised and caught inside the standard library do not stop (as debugpy's justMyCode)."""
    if not monitoring:
        pytest.skip("bdb boards stop on raised exceptions in traced code only (README, Debugging)")
    assert debug(debugging, "setExceptionBreakpoints", {"filters": ["raised"]})["success"]
    code = (
        "import os\nthere = os.path.exists('/no/such/file')\n"  # raises and catches OSError inside
        "def lookup(d):\n    try:\n        return d['missing']\n    except KeyError:\n        return None\n"
        "\nfound = lookup({})\n"
    )
    msg_id = debugging.client.execute(code)
    stopped = wait_event(debugging, "stopped")
    assert stopped["body"]["reason"] == "exception" and "KeyError" in stopped["body"]["text"]
    frames = debug(debugging, "stackTrace", {"threadId": 1})["body"]["stackFrames"]
    assert (frames[0]["name"], frames[0]["line"]) == ("lookup", 5)
    debug(debugging, "next", {"threadId": 1})  # stepping goes on from the stop
    wait_event(debugging, "stopped")
    frames = debug(debugging, "stackTrace", {"threadId": 1})["body"]["stackFrames"]
    assert (frames[0]["name"], frames[0]["line"]) == ("lookup", 6)
    debug(debugging, "continue", {"threadId": 1})
    assert wait_reply(debugging, msg_id)["status"] == "ok"
    assert debugging.run("there, found").result == {"text/plain": "(False, None)"}


def test_the_trace_hook_is_installed_only_while_a_debugged_cell_runs(debugging, monitoring):
    """sys.monitoring's tool on 3.12+ (no sys.settrace), sys.settrace below; nothing once disconnected."""
    set_breakpoints(debugging, "elsewhere = 1\n", 1)
    probe = (
        "import sys\nmonitor = getattr(sys, 'monitoring', None)\n"
        "hooks = (sys.gettrace() is not None, monitor and [monitor.get_tool(n) for n in range(6)])\n"
    )
    assert debugging.run(probe).status == "ok"
    traced, tools = eval(debugging.run("hooks").result["text/plain"])
    if monitoring:
        assert not traced and "rpyc_ikernel debugger" in tools
    else:
        assert traced and not tools
    assert debug(debugging, "disconnect", {"restart": False})["success"]
    assert debugging.run(probe).status == "ok"
    traced, tools = eval(debugging.run("hooks").result["text/plain"])
    assert not traced and not any(tools or [])


def test_only_code_of_files_with_breakpoints_gets_line_events(debugging, monitoring):
    """Item 5's cost on 3.12+, without timing: other code objects get no local (line) events."""
    if not monitoring:
        pytest.skip("bdb boards: sys.settrace's call hook decides per call (see the benchmark)")
    marked = "def marked():\n    return 2\n"
    path = debug(debugging, "dumpCell", {"code": marked})["body"]["sourcePath"]
    source = {"source": {"path": path}, "breakpoints": [{"line": 2, "condition": "False"}]}
    assert debug(debugging, "setBreakpoints", source)["success"]
    assert debugging.run(marked).status == "ok"
    probe = (
        "import sys\nM = sys.monitoring\n"
        "tool = [M.get_tool(n) for n in range(6)].index('rpyc_ikernel debugger')\n"
        "def plain():\n    return 1\n"
        "calls = [plain() + marked() for _ in range(3)]\n"
        "local = (M.get_local_events(tool, plain.__code__), M.get_local_events(tool, marked.__code__))\n"
    )
    assert debugging.run(probe).status == "ok"
    plain_events, marked_events = eval(debugging.run("local").result["text/plain"])
    assert plain_events == 0 and marked_events != 0
