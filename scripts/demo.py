"""The main job, end to end on this machine: a loopback board server, the kernel driving it.

Starts ``python -m rpyc_ikernel.server`` on 127.0.0.1 (port 18812, or a free port if another server
has that one), executes examples/getting_started.ipynb headless with the ``rpyc`` kernel through
nbclient, prints what each cell showed and where the executed notebook was written, and stops the
server. The server is ready when it prints its start line: nothing probes its port (a probe would be
a connection that fails the handshake, and the server would log it).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import nbformat
from nbclient import NotebookClient

REPO = Path(__file__).resolve().parent.parent
LISTENING = re.compile(r"listening on \S+:(\d+) ")
IN_USE = "is another server running?"


def start_server(port: int, log: Path, timeout: float = 60) -> tuple[subprocess.Popen, int]:
    """The board server on 127.0.0.1:port (a free port if that one is taken): (process, port).

    Its output goes to `log`; it is ready once its start line names the port it listens on.
    """
    for attempt in (port, 0):
        process = subprocess.Popen(
            [
                sys.executable,
                "-u",
                "-m",
                "rpyc_ikernel.server",
                "--host",
                "127.0.0.1",
                "--port",
                str(attempt),
            ],
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        said = []
        found = threading.Event()
        listening = []

        def read(process=process, said=said, found=found, listening=listening) -> None:
            with log.open("a") as handle:
                for line in process.stdout:  # drained to the end, so the server never blocks on a pipe
                    handle.write(line)
                    handle.flush()
                    said.append(line)
                    match = LISTENING.search(line)
                    if match and not listening:
                        listening.append(int(match.group(1)))
                        found.set()
            found.set()

        threading.Thread(target=read, daemon=True).start()
        if not found.wait(timeout):
            process.kill()
            raise SystemExit(f"the board server did not start within {timeout} s; see {log}")
        if listening:
            return process, listening[0]
        process.wait(10)
        if attempt and any(IN_USE in line for line in said):
            print(f"Port {port} is taken (another board server?); using a free port instead")
            continue
        raise SystemExit(f"the board server exited with code {process.returncode}: {''.join(said).strip()}")
    raise AssertionError("unreachable")


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

    log = Path(args.output).with_name("demo-board.log")
    log.parent.mkdir(parents=True, exist_ok=True)
    # the board server's first start prints the user's token and pairing string: only the user reads it
    os.close(os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600))
    log.chmod(0o600)  # an existing log keeps its mode through O_CREAT
    server, port = start_server(args.port, log)
    try:
        os.environ["RPYC_IKERNEL_HOST"] = "127.0.0.1"
        os.environ["RPYC_IKERNEL_PORT"] = str(port)
        notebook = nbformat.read(args.notebook, as_version=4)
        client = NotebookClient(
            notebook, kernel_name="rpyc", timeout=120, resources={"metadata": {"path": str(REPO)}}
        )
        client.execute()
        output = Path(args.output)
        nbformat.write(notebook, output)
        summarize(notebook)
    finally:
        server.terminate()
        server.wait(10)
    print(
        f"\nThe notebook ran on a board server at 127.0.0.1:{port}, stopped now (its log: {log})."
        f"\nExecuted notebook: {output}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
