"""The main job, end to end on this machine: a loopback board server, the kernel driving it.

Starts ``python -m rpyc_ikernel.server`` on 127.0.0.1 (port 18812, or a free port if that one is
taken), executes examples/getting_started.ipynb headless with the ``rpyc`` kernel through nbclient,
prints what each cell showed and where the executed notebook was written, and stops the server.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

REPO = Path(__file__).resolve().parent.parent


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def pick_port(preferred: int) -> int:
    if port_is_free(preferred):
        return preferred
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_listening(port: int, process: subprocess.Popen, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the board server exited early with code {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"the board server did not listen on 127.0.0.1:{port} within {timeout} s")


def summarize(notebook: nbformat.NotebookNode) -> None:
    for cell in notebook.cells:
        if cell.cell_type != "code":
            continue
        first_line = cell.source.splitlines()[0] if cell.source else ""
        print(f"\n[{cell.get('execution_count')}] {first_line}")
        for output in cell.outputs:
            if output.output_type == "stream":
                text = output.text
            elif output.output_type == "error":
                text = f"{output.ename}: {output.evalue}"
            else:
                data = output.get("data", {})
                kinds = ", ".join(sorted(data))
                text = data.get("text/plain", "") + f"   <{kinds}>"
            for line in str(text).rstrip("\n").splitlines():
                print(f"    {line}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--notebook", default=str(REPO / "examples" / "getting_started.ipynb"))
    parser.add_argument("--output", default=str(REPO / "out" / "getting_started.ipynb"))
    parser.add_argument("--port", type=int, default=18812)
    args = parser.parse_args()

    port = pick_port(args.port)
    server = subprocess.Popen(
        [sys.executable, "-m", "rpyc_ikernel.server", "--host", "127.0.0.1", "--port", str(port)],
        cwd=REPO,
    )
    try:
        wait_until_listening(port, server)
        os.environ["RPYC_IKERNEL_HOST"] = "127.0.0.1"
        os.environ["RPYC_IKERNEL_PORT"] = str(port)
        notebook = nbformat.read(args.notebook, as_version=4)
        client = NotebookClient(
            notebook, kernel_name="rpyc", timeout=120, resources={"metadata": {"path": str(REPO)}}
        )
        client.execute()
        output = Path(args.output)
        output.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(notebook, output)
        summarize(notebook)
        print(f"\nBoard server: 127.0.0.1:{port}. Executed notebook written to {output}")
    finally:
        server.terminate()
        server.wait(10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
