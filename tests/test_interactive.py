"""Between and inside cells, everything looks at the board: completion, help, input(), display,
matplotlib, `!` shell lines and %magics. Real board servers, real kernels, on 127.0.0.1."""

from __future__ import annotations

import base64
import sys
import time
from pathlib import Path

import pytest
from helpers import KernelSession, start_board

NO_IPYTHON_BOARD = Path(__file__).with_name("board_without_ipython.py")


@pytest.fixture(scope="module")
def session(kernelspec_prefix, board):
    """One kernel for the quick checks of this module (they do not depend on each other's state)."""
    kernel_session = KernelSession.start(board_port=board.port)
    yield kernel_session
    kernel_session.stop()


def outputs_in_order(cell) -> list:
    """(msg_type, short content) for each output of a cell, streams merged as they arrived."""
    items = []
    for msg in cell.outputs:
        content = msg["content"]
        if msg["msg_type"] == "stream":
            items.append(("stream", content["text"]))
        elif msg["msg_type"] in ("display_data", "update_display_data", "execute_result"):
            items.append((msg["msg_type"], content["data"].get("text/plain")))
        elif msg["msg_type"] == "clear_output":
            items.append(("clear_output", content["wait"]))
    return items


# ------------------------------------------------------------------ completion


def test_completion_offers_board_names_and_attributes(session):
    assert session.run("import os\nboard_only_name = 1").status == "ok"
    reply = session.request("complete", "os.pa")
    assert {"os.path", "os.pardir"} <= set(reply["matches"])
    assert all(match.startswith("os.pa") for match in reply["matches"])
    assert (reply["cursor_start"], reply["cursor_end"]) == (0, 5)
    kinds = {item["text"]: item["type"] for item in reply["metadata"]["_jupyter_types_experimental"]}
    assert kinds["os.path"] == "module"
    assert kinds["os.pardir"] == "instance"

    # a name that exists only on the board, completed in the middle of a line
    reply = session.request("complete", "x = board_only + 1", 14)
    assert reply["matches"] == ["board_only_name"]
    assert (reply["cursor_start"], reply["cursor_end"]) == (4, 14)


def test_completion_has_no_call_or_keyword_suffixes(session):
    session.run("import os")
    assert session.request("complete", "os.getpi")["matches"] == ["os.getpid"]
    assert session.request("complete", "whil")["matches"] == ["while"]
    assert "try" in session.request("complete", "tr")["matches"]


def test_completion_does_not_run_properties_of_board_objects(session):
    """A property of a board object may read hardware: completion names it without calling it."""
    session.run(
        "class Sensor:\n"
        "    reads = 0\n"
        "    @property\n"
        "    def temperature(self):\n"
        "        Sensor.reads += 1\n"
        "        return 21\n"
        "    def reset(self):\n"
        "        pass\n"
        "sensor = Sensor()"
    )
    reply = session.request("complete", "sensor.te")
    assert reply["matches"] == ["sensor.temperature"]
    assert reply["metadata"]["_jupyter_types_experimental"][0]["type"] == "property"
    assert set(session.request("complete", "sensor.")["matches"]) == {
        "sensor.reads",
        "sensor.reset",
        "sensor.temperature",
    }
    assert session.run("Sensor.reads").result == {"text/plain": "0"}


def test_completion_of_magic_names(session):
    reply = session.request("complete", "%tim")
    assert set(reply["matches"]) == {"%time", "%timeit", "%%time", "%%timeit"}  # as IPython offers them
    assert (reply["cursor_start"], reply["cursor_end"]) == (0, 4)
    assert session.request("complete", "x = 1\n%%writ")["matches"] == ["%%writefile"]


@pytest.mark.parametrize(
    "busy_code",
    [
        "import time\ntime.sleep(4)",
        "import time\nend = time.time() + 4\nwhile time.time() < end:\n    pass",
    ],
    ids=["sleeping", "cpu-bound"],
)
def test_completion_during_a_running_cell_answers_quickly_from_a_subshell(kernel, busy_code):
    """ipykernel runs shell requests one at a time; a subshell's run beside the cell."""
    kernel.run("import os\nmarker_during_cell = 1")
    subshell = kernel.create_subshell()
    cell_id = kernel.client.execute(busy_code)
    time.sleep(1.0)  # the cell is running on the board now

    start = time.monotonic()
    msg_id = kernel.send("complete_request", {"code": "marker_d", "cursor_pos": 8}, subshell_id=subshell)
    completion = kernel.wait_reply(msg_id, timeout=10)["content"]
    completion_time = time.monotonic() - start
    msg_id = kernel.send(
        "inspect_request", {"code": "os.path.join", "cursor_pos": 3, "detail_level": 0}, subshell_id=subshell
    )
    help_reply = kernel.wait_reply(msg_id, timeout=10)["content"]
    cell_reply = kernel.wait_reply(cell_id, timeout=30)["content"]

    assert completion["matches"] == ["marker_during_cell"]
    assert completion_time < 1.0, completion_time
    assert help_reply["found"] and "join" in help_reply["data"]["text/plain"]
    assert cell_reply["status"] == "ok"  # the cell was not disturbed
    assert kernel.run("marker_during_cell + 1").result == {"text/plain": "2"}


# ------------------------------------------------------------------ inspection and help

SCALE = "def scale(value, factor=2):\n    'Multiply on the board.'\n    return value * factor\n"


def test_inspect_shows_signature_docstring_and_source_of_board_objects(session):
    session.run(SCALE)
    reply = session.request("inspect", "scale(3, ", 9)  # Shift-Tab inside the call
    assert reply["found"]
    text = reply["data"]["text/plain"]
    assert "scale(value, factor=2)" in text and "Multiply on the board." in text
    assert "return value * factor" not in text
    detailed = session.request("inspect", "scale", 5, detail_level=1)["data"]["text/plain"]
    assert "return value * factor" in detailed
    assert session.request("inspect", "no_such_thing", 5)["found"] is False
    session.run("class Probe:\n    def __init__(self, port: int):\n        pass\n")
    text = session.request("inspect", "Probe", 5, detail_level=1)["data"]["text/plain"]
    assert "Init signature: Probe(port: int)" in text
    assert "File:           <cell-" in text and "def __init__(self, port: int):" in text


def test_question_marks_page_board_help(session):
    session.run(SCALE)
    for code, has_source in (("scale?", False), ("?scale", False), ("scale??", True)):
        cell = session.run(code)
        assert cell.status == "ok", code
        [page] = cell.reply["payload"]
        assert page["source"] == "page"
        text = page["data"]["text/plain"]
        assert "Multiply on the board." in text or has_source
        assert ("return value * factor" in text) == has_source, code
    cell = session.run("no_such_thing?")
    assert cell.status == "error" and "not found on the board" in cell.reply["evalue"]
    # inside a longer cell, help is printed where the line is
    cell = session.run("before = 1\nscale?\nafter = 2")
    assert cell.status == "ok" and "Multiply on the board." in cell.stream()


def test_is_complete_follows_ipython_including_magics_and_shell_lines(session):
    expected = {
        "x = 1": ("complete", None),
        "!ls -l": ("complete", None),
        "files = !ls": ("complete", None),
        "%time x = 1": ("complete", None),
        "for i in range(3):": ("incomplete", "    "),
        "x = [1,\n": ("incomplete", ""),
        "%%bash\necho hi": ("incomplete", ""),
        "%%bash\necho hi\n\n": ("complete", None),
        "1 +* 2": ("invalid", None),
    }
    for code, (status, indent) in expected.items():
        reply = session.request("is_complete", code)
        assert reply["status"] == status, code
        assert reply.get("indent") == indent, code


# ------------------------------------------------------------------ input()


def test_input_and_getpass_ask_through_the_stdin_channel(session):
    prompts = []

    def answer(msg):
        prompts.append((msg["content"]["prompt"], msg["content"]["password"]))
        session.client.input("s3cret" if msg["content"]["password"] else "Ada")

    cell = session.run(
        "name = input('Name? ')\nimport getpass\npin = getpass.getpass('PIN: ')\nprint(name, len(pin))",
        allow_stdin=True,
        stdin_hook=answer,
    )
    assert cell.status == "ok"
    assert prompts == [("Name? ", False), ("PIN: ", True)]
    assert cell.stream() == "Ada 6\n"


@pytest.mark.parametrize("code", ["input('Name? ')", "import getpass\ngetpass.getpass()"])
def test_input_without_stdin_is_a_clear_error_not_a_hang(session, code):
    start = time.monotonic()
    cell = session.run(code, allow_stdin=False)
    assert time.monotonic() - start < 5
    assert cell.reply["ename"] == "StdinNotImplementedError"
    assert "does not support input requests" in cell.reply["evalue"]
    lines = cell.error["traceback"]
    assert lines[-1].startswith("StdinNotImplementedError: ")
    assert not any("agent" in line for line in lines)


# ------------------------------------------------------------------ display


def test_display_prints_and_clear_output_keep_their_order(session):
    cell = session.run("print('a')\ndisplay(1)\nprint('b')\nclear_output(wait=True)\nprint('c')")
    assert outputs_in_order(cell) == [
        ("stream", "a\n"),
        ("display_data", "1"),
        ("stream", "b\n"),
        ("clear_output", True),
        ("stream", "c\n"),
    ]


def test_ipython_display_on_a_board_that_has_ipython(session):
    cell = session.run(
        "from IPython.display import HTML, Markdown, display, update_display\n"
        "display(HTML('<b>bold</b>'), Markdown('*md*'))\n"
        "handle = display('v1', display_id=True)\n"
        "update_display('v2', display_id=handle.display_id)"
    )
    assert cell.status == "ok"
    [html, markdown, first, update] = cell.outputs
    assert html["content"]["data"]["text/html"] == "<b>bold</b>"
    assert markdown["content"]["data"]["text/markdown"] == "*md*"
    assert update["msg_type"] == "update_display_data"
    assert update["content"]["transient"] == first["content"]["transient"]


def test_ipython_display_stand_in_on_a_board_without_ipython(kernelspec_prefix):
    server = start_board(command=[sys.executable, str(NO_IPYTHON_BOARD), "--host", "127.0.0.1"])
    kernel_session = KernelSession.start(board_port=server.port)
    try:
        cell = kernel_session.run(
            "import IPython\n"
            "from IPython.display import HTML, Image, display, clear_output\n"
            "print(IPython.get_ipython(), getattr(IPython, 'rpyc_ikernel_shim', False))\n"
            "display(HTML('<i>h</i>'))\n"
            "display(Image(data=b'\\x89PNG\\r\\n\\x1a\\nfake', width=20))"
        )
        assert cell.status == "ok", cell.error
        assert cell.stream() == "None True\n"
        html, image = cell.of_type("display_data")
        assert html["data"]["text/html"] == "<i>h</i>"
        assert base64.b64decode(image["data"]["image/png"]).startswith(b"\x89PNG")
        assert image["metadata"] == {"image/png": {"width": 20}}
        cell = kernel_session.run("import IPython.core")
        assert cell.reply["ename"] in ("ModuleNotFoundError", "ImportError")
    finally:
        kernel_session.stop()
        server.stop()


# ------------------------------------------------------------------ matplotlib


def png_of(content: dict) -> bytes:
    return base64.b64decode(content["data"]["image/png"])


def test_matplotlib_figures_show_inline_as_png(session):
    pytest.importorskip("matplotlib")
    cell = session.run(
        "import matplotlib.pyplot as plt\n"
        "plt.plot([1, 2, 3])\n"
        "print('before')\n"
        "plt.show()\n"
        "print('after')\n"
        "plt.figure()\n"
        "plt.plot([3, 2, 1]);"
    )
    assert cell.status == "ok", cell.error
    kinds = [kind for kind, _ in outputs_in_order(cell)]
    assert kinds == ["stream", "display_data", "stream", "display_data"]
    for content in cell.of_type("display_data"):
        assert png_of(content).startswith(b"\x89PNG")
        assert content["data"]["text/plain"].startswith("<Figure size")
    assert session.run("len(plt.get_fignums())").result == {"text/plain": "0"}  # shown, then closed

    # a figure as the last expression is the result, shown once
    cell = session.run("fig, ax = plt.subplots()\nax.plot([1, 0])\nfig")
    assert png_of({"data": cell.result}).startswith(b"\x89PNG")
    assert cell.of_type("display_data") == []


def test_matplotlib_backend_is_chosen_without_leaking_to_child_processes(session):
    pytest.importorskip("matplotlib")
    cell = session.run(
        "import matplotlib, subprocess, sys\n"
        "child = subprocess.run([sys.executable, '-c', 'import os; print(os.environ.get(\"MPLBACKEND\"))'],"
        " capture_output=True, text=True)\n"
        "print(matplotlib.get_backend(), child.stdout.strip())"
    )
    assert cell.stream() == "module://_rpyc_ikernel_mpl None\n"
    assert session.run("%matplotlib inline").status == "ok"
    cell = session.run("%matplotlib qt")
    assert cell.reply["ename"] == "UsageError" and len(cell.error["traceback"]) == 1


def test_retina_figures_have_half_size_metadata(kernel):
    pytest.importorskip("matplotlib")
    cell = kernel.run(
        "%config InlineBackend.figure_format = 'retina'\n"
        "import matplotlib.pyplot as plt\n"
        "plt.figure(figsize=(2, 1), dpi=50)\n"
        "plt.plot([1, 2]);"
    )
    [figure] = cell.of_type("display_data")
    size = figure["metadata"]["image/png"]
    png = png_of(figure)
    assert int.from_bytes(png[16:20], "big") // 2 == size["width"]  # drawn at twice the size


# ------------------------------------------------------------------ ! and %magics


def test_shell_lines_run_in_the_board_shell(session, board):
    cell = session.run("!echo parent=$PPID; echo oops >&2")
    assert cell.stream() == f"parent={board.process.pid}\noops\n"
    cell = session.run("n = 3\nfiles = !echo one; echo {n * 2}\nfiles, files.s")
    assert cell.result == {"text/plain": "(['one', '6'], 'one 6')"}
    assert session.run("!exit 3\n_exit_code").result == {"text/plain": "3"}
    assert session.run("!!echo hi").result == {"text/plain": "['hi']"}


def test_line_and_cell_magics_work_against_the_board(session, tmp_path):
    session.run("secret_value = 41")
    cell = session.run("%time secret_value + 1")
    assert cell.result == {"text/plain": "42"}
    assert "CPU times: user" in cell.stream() and "Wall time:" in cell.stream()
    cell = session.run("%timeit -n 3 -r 2 secret_value * 2")
    assert "per loop (mean ± std. dev. of 2 runs, 3 loops each)" in cell.stream()
    assert "secret_value" in session.run("%who").stream().strip().split("\t")
    assert "secret_value" in session.run("%whos").stream()

    target = tmp_path / "made_by_magic.py"
    cell = session.run(f"%%writefile {target}\nprint('ran', __name__)\nfrom_file = 7\n")
    assert cell.stream() == f"Writing {target}\n"
    assert session.run(f"%run {target}\nfrom_file").stream() == "ran __main__\n"
    assert session.run("from_file").result == {"text/plain": "7"}

    assert session.run(f"%cd {tmp_path}").stream() == f"{tmp_path}\n"
    assert session.run("%pwd").result == {"text/plain": repr(str(tmp_path))}
    session.run("%cd -")
    assert session.run("%env RPYC_MAGIC_TEST=yes").stream() == "env: RPYC_MAGIC_TEST=yes\n"
    assert session.run("import os\nos.environ['RPYC_MAGIC_TEST']").result == {"text/plain": "'yes'"}
    assert session.run("%%bash\necho $((6 * 7))\n").stream() == "42\n"
    cell = session.run("%%html\n<b>raw</b>")
    assert cell.of_type("display_data")[0]["data"]["text/html"] == "<b>raw</b>\n"


def test_unknown_magic_is_one_clear_line(session):
    cell = session.run("%gui qt")
    assert cell.reply["ename"] == "UsageError"
    assert cell.error["traceback"] == [
        "UsageError: %gui is not available on the board (%lsmagic lists what is);"
        " a '# exec(...)' line runs Python in the kernel instead"
    ]
    assert "%timeit" in session.run("%lsmagic").stream()


def test_errors_after_magic_lines_point_at_the_users_line(session):
    cell = session.run("\n\n!true\nvalue = 1\n1 / 0\n")
    text = "\n".join(cell.error["traceback"])
    assert "line 5" in text and "1 / 0" in text
    cell = session.run("%time 1 / 0")
    assert cell.reply["ename"] == "ZeroDivisionError"
    assert not any("agent" in line for line in cell.error["traceback"])


def test_cell_code_does_not_inherit_the_agents_future_imports(session):
    """The agent uses `from __future__ import annotations`; cells must keep real annotations."""
    cell = session.run("def typed(port: int) -> str:\n    pass\ntyped.__annotations__")
    assert cell.result == {"text/plain": "{'port': <class 'int'>, 'return': <class 'str'>}"}
