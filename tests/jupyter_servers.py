"""Real JupyterLab 4 and Notebook 7 servers on 127.0.0.1, for the browser tests.

Each server gets a free port, a random token, its own root directory and its own config, runtime,
settings and workspace directories, so nothing of the developer's own Jupyter setup leaks in and
nothing is left behind. It finds the rpyc kernelspec through JUPYTER_PATH and passes its environment
(RPYC_IKERNEL_HOST/PORT: the test board) on to the kernels it starts.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from helpers import free_port

JUPYTER = str(Path(sys.executable).with_name("jupyter"))

# Nothing from the network: no news feed, no update check, no extension listing from a package index.
QUIET_LAB = {
    "news_url": None,
    "check_for_updates_class": "jupyterlab.handlers.announcements.NeverCheckForUpdate",
    "extension_manager": "readonly",
}
# The "official Jupyter news?" toast would cover part of the page in every screenshot.
QUIET_PLUGINS = {"@jupyterlab/apputils-extension:announcements": True}


@dataclass
class JupyterServer:
    """A running `jupyter lab` or `jupyter notebook` server process."""

    app: str
    process: subprocess.Popen
    port: int
    token: str
    root: Path
    log: Path

    def url(self, path: str) -> str:
        """A URL of this server, with the token (and any query already in path) kept."""
        separator = "&" if "?" in path else "?"
        return f"http://127.0.0.1:{self.port}{path}{separator}token={self.token}"

    def notebook_url(self, name: str, workspace: str = "") -> str:
        """Where this app opens the notebook `name` of its root directory."""
        if self.app == "lab":
            return self.url(f"/lab/workspaces/{workspace or 'auto-' + secrets.token_hex(4)}/tree/{name}")
        return self.url(f"/notebooks/{name}")

    def api(self, method: str, path: str) -> object:
        """Call the server's REST API; returns the decoded JSON answer (None when empty)."""
        request = urllib.request.Request(self.url(path), method=method)
        with urllib.request.urlopen(request, timeout=30) as response:
            body = response.read()
        return json.loads(body) if body else None

    def kernels(self) -> list[dict]:
        """The server's kernel models (id, name, execution_state, connections, ...)."""
        for _attempt in range(20):
            try:
                return self.api("GET", "/api/kernels")
            except urllib.error.HTTPError:
                # jupyter_server answers 500 while a kernel it lists is still starting: ask again.
                time.sleep(0.25)
        raise RuntimeError(f"jupyter {self.app} cannot list its kernels:\n{self.output()}")

    def shutdown_kernels(self) -> None:
        """Shut down every kernel this server runs (tests leave none behind for the next one)."""
        for kernel in self.kernels():
            self.api("DELETE", f"/api/kernels/{kernel['id']}")

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()  # the server shuts its kernels down on SIGTERM
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


def start_jupyter_server(app: str, home: Path, env: dict, timeout: float = 90) -> JupyterServer:
    """Start `jupyter lab` (app="lab") or `jupyter notebook` with everything under `home`."""
    root = home / "notebooks"
    config = home / "config"
    for folder in (root, config, home / "runtime", home / "settings", home / "workspaces"):
        folder.mkdir(parents=True, exist_ok=True)
    settings = {"LabApp": QUIET_LAB}
    (config / "jupyter_server_config.json").write_text(json.dumps(settings))
    (config / "labconfig").mkdir(exist_ok=True)
    (config / "labconfig" / "page_config.json").write_text(json.dumps({"disabledExtensions": QUIET_PLUGINS}))
    # Render every cell: with Lab 4's default windowing, cells outside the viewport are placeholders
    # that locators cannot run or read.
    tracker = home / "settings" / "@jupyterlab" / "notebook-extension"
    tracker.mkdir(parents=True, exist_ok=True)
    (tracker / "tracker.jupyterlab-settings").write_text(json.dumps({"windowingMode": "none"}))
    port, token = free_port(), secrets.token_hex(16)
    server_env = {
        **env,
        "JUPYTER_CONFIG_DIR": str(config),
        "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
        "JUPYTERLAB_SETTINGS_DIR": str(home / "settings"),
        "JUPYTERLAB_WORKSPACES_DIR": str(home / "workspaces"),
    }
    command = [
        JUPYTER,
        app,
        "--no-browser",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",
        "--ServerApp.allow_root=True",  # CI runs as root
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={root}",
    ]
    log = home / f"jupyter-{app}.log"
    with log.open("w") as handle:
        process = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, env=server_env, cwd=root)
    server = JupyterServer(app, process, port, token, root, log)
    try:
        wait_for_status(server, timeout)
    except BaseException:
        server.stop()
        raise
    return server


def wait_for_status(server: JupyterServer, timeout: float) -> None:
    """Wait until GET /api/status answers 200 (the server is up and the token works)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"jupyter {server.app} exited early:\n{server.output()}")
        try:
            with urllib.request.urlopen(server.url("/api/status"), timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.2)
    raise TimeoutError(f"jupyter {server.app} did not answer /api/status in {timeout} s:\n{server.output()}")


def write_notebook(path: Path, cells: list[str] = ()) -> Path:
    """A notebook file bound to the rpyc kernel, with the given code cells (unexecuted)."""
    import nbformat

    notebook = nbformat.v4.new_notebook()
    notebook.metadata["kernelspec"] = {"name": "rpyc", "display_name": "rpyc", "language": "python"}
    notebook.cells = [nbformat.v4.new_code_cell(source) for source in cells or [""]]
    nbformat.write(notebook, path)
    return path
