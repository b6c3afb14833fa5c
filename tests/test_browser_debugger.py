"""JupyterLab 4's Debugger panel on board code, end to end in Debian's chromium (Playwright).

The bug icon turns the debugger on, a click in the gutter sets a breakpoint, the run stops there with
the line highlighted, and the Variables panel shows a value that exists only on the board (made from
the board server's pid). Continue lets the cell finish. The picture goes to doc/ with
`make screenshots` (RPYC_IKERNEL_SCREENSHOTS=doc).
"""

from __future__ import annotations

import os

import pytest
from jupyter_servers import start_jupyter_server, write_notebook
from notebook_ui import NotebookPage
from test_browser import browser, page, screenshots  # noqa: F401  (the fixtures, shared)

pytestmark = [pytest.mark.browser, pytest.mark.timeout(240)]

CODE = "import os\nboard_secret = os.getpid() * 3\ntotal = board_secret + 1\nprint('done', total)"


@pytest.fixture(scope="module")
def jupyter(browser, kernelspec_prefix, board, tmp_path_factory):  # noqa: F811
    """JupyterLab 4 (the debugger UI is JupyterLab's) whose default board is `board`."""
    env = dict(os.environ, RPYC_IKERNEL_HOST="127.0.0.1", RPYC_IKERNEL_PORT=str(board.port))
    server = start_jupyter_server("lab", tmp_path_factory.mktemp("jupyter-lab-debugger"), env)
    yield server
    server.stop()


def test_breakpoint_stops_board_code_and_variables_show_board_values(page, jupyter, board, screenshots):  # noqa: F811
    page.set_viewport_size({"width": 1400, "height": 800})  # the notebook toolbar shows the bug icon
    write_notebook(jupyter.root / "debugging.ipynb", [CODE])
    page.goto(jupyter.notebook_url("debugging.ipynb"))
    notebook = NotebookPage(page)
    ready = notebook.run(0, "print('board ready')")  # the kernel is up: the bug icon is enabled
    ready.filter(has_text="board ready").wait_for()
    notebook.enter_code(0, CODE)
    page.locator(".jp-NotebookPanel-toolbar .jp-DebuggerBugButton").first.click()
    pressed = '.jp-DebuggerBugButton [aria-pressed="true"], .jp-DebuggerBugButton[aria-pressed="true"]'
    page.locator(pressed).first.wait_for()
    gutter = notebook.cell(0).locator(".cm-breakpoint-gutter .cm-gutterElement")
    gutter.nth(3).click()  # line 3 (the first element is CodeMirror's spacer)
    sidebar = page.locator("#jp-debugger-sidebar")
    sidebar.get_by_text("rpyc_ikernel_").first.wait_for()  # the Breakpoints panel lists the cell's
    notebook.click_editor(0)
    page.keyboard.press("Shift+Enter")
    highlight = notebook.cell(0).locator(".jp-DebuggerEditor-highlight")
    highlight.wait_for(timeout=60_000)
    assert "total = board_secret + 1" in highlight.inner_text()
    sidebar_tab = page.locator('.jp-SideBar [data-id="jp-debugger-sidebar"]')
    if (
        page.locator(".jp-DebuggerVariables").count() == 0
        or not page.locator(".jp-DebuggerVariables").first.is_visible()
    ):
        sidebar_tab.click()
    secret = str(board.process.pid * 3)
    variables = page.locator(".jp-DebuggerVariables")
    variables.get_by_text("board_secret").first.wait_for(timeout=30_000)
    variables.get_by_text(secret).first.wait_for(timeout=30_000)
    page.screenshot(path=str(screenshots / "lab-debugger.png"))
    page.locator('.jp-DebuggerCallstack button[title^="Continue"], button[title^="Continue"]').first.click()
    notebook.outputs(0).filter(has_text=f"done {board.process.pid * 3 + 1}").wait_for(timeout=60_000)
