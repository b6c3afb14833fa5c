"""Magics and shell commands side by side with the stock IPython 9 kernel: same cells, same outcome."""

from __future__ import annotations

import pytest
from helpers import KernelSession


def both(ours, stock, code: str, **kwargs):
    return ours.run(code, **kwargs), stock.run(code, **kwargs)


@pytest.fixture(scope="module", autouse=True)
def _cwd_back(ours, stock):
    """%cd changes the board process's directory: put it back for the other tests of the session."""
    for session in (ours, stock):
        session.run("import os as _os_saved; _saved_cwd = _os_saved.getcwd()")
    yield
    for session in (ours, stock):
        session.run("_os_saved.chdir(_saved_cwd)")


def test_bash_failing_script_keeps_stderr_apart_and_fails_the_cell(ours, stock):
    for result in both(ours, stock, "%%bash\necho out\necho err >&2\nexit 3"):
        assert result.status == "error"
        assert result.reply["ename"] == "CalledProcessError"
        assert "non-zero exit status 3" in result.reply["evalue"]
        assert result.stream("stdout") == "out\n"
        assert result.stream("stderr") == "err\n"


@pytest.mark.parametrize(
    "cell, stdout",
    [
        ("%%bash --no-raise-error\necho a\nexit 3", "a\n"),
        ("%%sh\necho from sh", "from sh\n"),
        ("%%script bash\necho via script", "via script\n"),
        ("%%bash --out captured\necho kept\n", ""),
        ("!echo shell", "shell\n"),
        ("lines = !printf 'a\\nb\\n'\nprint(lines, lines.n == 'a\\nb')", "['a', 'b'] True\n"),
        ("%env PARITY_VAR=value", "env: PARITY_VAR=value\n"),
        (
            "print(%env PARITY_VAR)".replace("%env PARITY_VAR", "__import__('os').environ['PARITY_VAR']"),
            "value\n",
        ),
        ("%cd /tmp", "/tmp\n"),
        ("print(%pwd)".replace("%pwd", "get_ipython().run_line_magic('pwd', '')"), "/tmp\n"),
        ("parity_int = 1\n%who int", None),
        ("%whos", None),
        ("print(captured)", "kept\n\n"),
    ],
)
def test_same_output(ours, stock, cell, stdout):
    mine, theirs = both(ours, stock, cell)
    assert mine.status == theirs.status == "ok", (mine.reply, theirs.reply)
    if stdout is not None:
        # the stock kernel runs !cmd in a pty, whose lines end in \r\n
        assert mine.stream() == theirs.stream().replace("\r\n", "\n") == stdout
    else:
        assert "parity_int" in mine.stream() and "parity_int" in theirs.stream()


def test_time_and_timeit(ours, stock):
    for result in both(ours, stock, "%time sum(range(10))"):
        assert "Wall time" in result.stream() and result.result["text/plain"] == "45"
    for result in both(ours, stock, "%timeit -n 2 -r 2 sum(range(10))"):
        assert "per loop (mean ± std. dev. of 2 runs, 2 loops each)" in result.stream()


def test_underscores_in_and_out(ours, stock):
    for session in (ours, stock):
        n = session.run("'first'").reply["execution_count"]
        session.run("'second'")
        out = session.run(f"print(_, __, _{n}, Out[{n}], In[{n}] == \"'first'\")").stream()
        assert out == "second first first first True\n"


def test_run_and_load_a_file(ours, stock, tmp_path):
    script = tmp_path / "script.py"
    script.write_text("ran_value = 6 * 7\nprint('ran', ran_value)\n")
    for result in both(ours, stock, f"%run {script}\nprint(ran_value)"):
        assert result.stream() == "ran 42\n42\n"
    for result in both(ours, stock, f"%load {script}"):
        assert result.reply["payload"] == [
            {"source": "set_next_input", "text": f"# %load {script}\n" + script.read_text(), "replace": True}
        ]


def test_history_shows_what_was_typed(ours, stock):
    for session in (ours, stock):
        session.run("history_marker = 5")
        session.run("%time history_marker")
        assert session.run("%history -l 2").stream() == "history_marker = 5\n%time history_marker\n"
        assert session.run("%history").stream().endswith("%time history_marker\n%history -l 2\n%history\n")


def test_a_magic_the_board_lacks_says_so_in_one_line(ours):
    result = ours.run("%gui qt")
    assert result.status == "error"
    assert len(result.reply["traceback"]) == 1
    assert "%gui is not available on the board" in result.reply["traceback"][0]


def test_reset_empties_the_namespace_and_the_output_cache_but_keeps_in(kernelspec_prefix, board):
    """%reset -f in kernels of their own (it would empty the module's shared kernels too)."""
    sessions = [KernelSession.start(board_port=board.port), KernelSession.start(kernel_name="python3")]
    try:
        for session in sessions:
            session.run("kept_value = 1")
            session.run("'shown'")
            assert session.run("%reset -f").status == "ok"
            seen = session.run("print(len(Out), '_' in dir(), 'kept_value' in dir(), len(In) > 3)").stream()
            assert seen == "0 False False True\n", (session.manager.kernel_name, seen)
            assert session.run("'again'\n").result == {"text/plain": "'again'"}
            assert session.run("print(_, len(Out))").stream() == "again 1\n"
    finally:
        for session in sessions:
            session.stop()
