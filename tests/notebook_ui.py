"""Driving JupyterLab / Notebook 7 pages with Playwright and Debian's chromium.

Playwright's own browser download is not reachable here, so the browser is the system's chromium.
The selectors are the ones JupyterLab 4 and Notebook 7 share (Notebook 7 is built from JupyterLab's
components): `.jp-Notebook`, `.jp-Cell`, `.cm-content` (the CodeMirror 6 editor), `.jp-OutputArea-output`,
`.jp-Completer`, `.jp-KernelName`.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# Without the networking flags chromium keeps calling home on a machine with no network.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEWPORT = {"width": 1000, "height": 700}
TIMEOUT_MS = 120_000  # kernels start and cells run on a shared 2-core machine beside other tests


def chromium_missing() -> str | None:
    """Why the browser tests cannot run here, or None when they can."""
    if not Path(CHROMIUM).exists():
        return f"Debian's chromium is not installed ({CHROMIUM} missing; apt-get install chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed (pip install -e .[test])"
    return None


def launch_chromium(playwright, user_data_dir: Path):
    """A headless chromium with a fresh profile, as a Playwright persistent context."""
    context = playwright.chromium.launch_persistent_context(
        str(user_data_dir),
        executable_path=CHROMIUM,
        headless=True,
        args=CHROMIUM_ARGS,
        viewport=VIEWPORT,
    )
    context.set_default_timeout(TIMEOUT_MS)
    return context


class NotebookPage:
    """A notebook open in JupyterLab or Notebook 7: enter code in cells, run them, read outputs."""

    def __init__(self, page) -> None:
        self.page = page
        page.locator(".jp-Notebook .jp-Cell").first.wait_for()

    def cell(self, index: int):
        return self.page.locator(".jp-Notebook .jp-Cell").nth(index)

    def outputs(self, index: int):
        return self.cell(index).locator(".jp-OutputArea-output")

    def kernel_name(self):
        return self.page.locator(".jp-KernelName").first

    def enter_code(self, index: int, code: str) -> None:
        """Replace the code of cell `index` (inserted as text: no auto-indent or bracket closing)."""
        self.click_editor(index)
        self.page.keyboard.press("ControlOrMeta+a")
        self.page.keyboard.insert_text(code)

    def click_editor(self, index: int) -> None:
        """Click into cell `index`'s editor, choosing our kernel first if the app asks for one."""
        editor = self.cell(index).locator(".cm-content")
        for _attempt in range(12):
            self.choose_kernel_if_asked()
            try:
                editor.click(timeout=5_000)
                return
            except Exception as exc:  # playwright's TimeoutError: something (a dialog) covers the cell
                if "Timeout" not in type(exc).__name__:
                    raise
        editor.click()  # one last time, with playwright's own message if it still fails

    def choose_kernel_if_asked(self) -> None:
        """Answer a "Select kernel" dialog with our kernel, as a person would.

        On a busy machine the app can open a notebook before its list of kernels has loaded; it then
        asks which kernel to use although the notebook names one.
        """
        dialog = self.page.locator(".jp-Dialog")
        if dialog.count() == 0 or "Select kernel" not in dialog.first.inner_text():
            return
        choice = dialog.first.locator("select")
        if choice.count():
            labels = choice.first.locator("option").all_inner_texts()
            ours = next(
                (label for label in labels if "board" in label.lower() or "rpyc" in label.lower()), None
            )
            if ours is not None:
                choice.first.select_option(label=ours)
        dialog.first.locator("button.jp-mod-accept").first.click()
        print("the app asked which kernel to use (its kernel list was not loaded yet): chose ours")

    def run(self, index: int, code: str | None = None, attempts: int = 4):
        """Run cell `index` (after entering `code`, if given) with Shift+Enter; returns its outputs.

        JupyterLab drops, rather than queues, a run asked for while the notebook's kernel is still
        being started or connected (the cell's prompt stays `[ ]`). A person then presses Shift+Enter
        again, and so does this. The server's kernel list cannot tell when the page is ready: when
        the page's first websocket attempt fails during kernel start-up, it shows no connection.
        """
        if code is not None:
            self.enter_code(index, code)
        for _attempt in range(attempts):
            self.click_editor(index)
            self.page.keyboard.press("Shift+Enter")
            if self._started(index):
                return self.outputs(index)
            print(f"cell {index}: the page dropped the run (no kernel yet); pressing Shift+Enter again")
        raise AssertionError(f"cell {index} did not run after {attempts} tries: the page got no kernel")

    def _started(self, index: int, timeout_ms: int = 10_000) -> bool:
        """True once the cell's prompt shows `[*]` or a number: the run reached the kernel's queue."""
        from playwright.sync_api import expect

        prompt = self.cell(index).locator(".jp-InputPrompt")
        try:
            # a prompt not rendered yet has no text at all: wait for `[*]` or `[N]`, not just "not `[ ]`"
            expect(prompt).to_have_text(re.compile(r"\[\s*(\*|\d+)\s*\]"), timeout=timeout_ms)
        except AssertionError:
            return False
        return True


def save_screenshot(page, path: Path, *parts, padding: int = 6) -> Path:
    """A PNG of the smallest page area holding all `parts` (locators): small pictures for the docs."""
    boxes = [box for box in (part.bounding_box() for part in parts) if box]
    left = max(0, min(box["x"] for box in boxes) - padding)
    top = max(0, min(box["y"] for box in boxes) - padding)
    right = min(VIEWPORT["width"], max(box["x"] + box["width"] for box in boxes) + padding)
    bottom = min(VIEWPORT["height"], max(box["y"] + box["height"] for box in boxes) + padding)
    path.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(path), clip={"x": left, "y": top, "width": right - left, "height": bottom - top})
    return path
