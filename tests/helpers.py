"""Test helpers: start real board servers and real kernels, and run cells collecting their output."""

from __future__ import annotations

import atexit
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from queue import Empty

from jupyter_client.manager import KernelManager

REPO = Path(__file__).resolve().parent.parent
PLAIN_BOARD = Path(__file__).with_name("plain_board.py")


@dataclass
class ProcessLog:
    """Where a board server's or a kernel's output goes; a failing test shows it (tests/conftest.py)."""

    label: str
    path: Path
    alive: Callable[[], bool]

    def tail(self, lines: int = 80) -> str:
        try:
            return "\n".join(self.path.read_text(errors="replace").splitlines()[-lines:])
        except OSError as error:
            return f"(cannot read {self.path}: {error})"


PROCESS_LOGS: list[ProcessLog] = []  # every board and kernel this process started, in order
_LOG_DIR: list[Path] = []


def new_log(label: str, alive: Callable[[], bool] = lambda: False) -> ProcessLog:
    """A fresh log file in this process's log directory, registered for failure reports."""
    if not _LOG_DIR:
        _LOG_DIR.append(Path(tempfile.mkdtemp(prefix=f"rpyc-ikernel-logs-{os.getpid()}-")))
    log = ProcessLog(label, _LOG_DIR[0] / f"{len(PROCESS_LOGS):04d}-{label}.log", alive)
    log.path.touch()
    PROCESS_LOGS.append(log)
    return log


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


@dataclass
class BoardServer:
    """A board server process on 127.0.0.1."""

    process: subprocess.Popen
    port: int
    log: Path

    def stop(self) -> None:
        stop_process(self.process)

    def output(self) -> str:
        return self.log.read_text(errors="replace")


_STARTED_BOARDS: list[subprocess.Popen] = []


@atexit.register
def _kill_leftover_boards() -> None:
    """A test that failed between starting a board and its try/finally leaves no server running."""
    for process in _STARTED_BOARDS:
        if process.poll() is None:
            process.kill()
            process.wait(10)


def start_board(
    command: list[str] | None = None,
    port: int | None = None,
    cwd: Path | None = None,
    env: dict | None = None,
) -> BoardServer:
    """Start a board server on a free (or given) port and wait until it accepts connections."""
    port = port or free_port()
    if command is None:
        command = [sys.executable, "-m", "rpyc_ikernel.server", "--host", "127.0.0.1"]
    record = new_log(f"board-{port}")
    with record.path.open("w") as handle:
        process = subprocess.Popen(
            [*command, "--port", str(port)],
            stdout=handle,
            stderr=subprocess.STDOUT,
            cwd=cwd or REPO,
            env=env,
        )
    record.alive = lambda: process.poll() is None
    server = BoardServer(process, port, record.path)
    _STARTED_BOARDS.append(process)
    try:
        wait_for_port(port)
    except TimeoutError:
        server.stop()
        raise RuntimeError(f"board server did not start: {server.output()}") from None
    return server


def install_kernelspec(prefix: Path) -> None:
    """Install the kernelspec into prefix with the real installer, and point Jupyter at it."""
    subprocess.run(
        [sys.executable, "-m", "rpyc_ikernel.install", "--prefix", str(prefix)],
        check=True,
        capture_output=True,
    )
    data_dir = str(prefix / "share" / "jupyter")
    paths = [data_dir, *filter(None, os.environ.get("JUPYTER_PATH", "").split(os.pathsep))]
    os.environ["JUPYTER_PATH"] = os.pathsep.join(dict.fromkeys(paths))


def reply_to(client, msg_id: str, timeout: float = 30, channel: str = "shell") -> dict:
    """The reply (whole message) to msg_id on a client's shell or control channel; other replies are
    dropped. Raises TimeoutError after `timeout` seconds."""
    get_msg = getattr(client, f"{channel}_channel").get_msg
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        try:
            reply = get_msg(timeout=max(0.01, left))
        except Empty:
            raise TimeoutError(f"no {channel} reply to {msg_id} in {timeout:.0f} s") from None
        if reply["parent_header"].get("msg_id") == msg_id:
            return reply


def wait_for_iopub(client, msg_id: str, msg_type: str = "execute_input", timeout: float = 30) -> dict:
    """The first IOPub message of msg_type caused by msg_id (execute_input: the cell has begun)."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        try:
            msg = client.get_iopub_msg(timeout=max(0.01, left))
        except Empty:
            raise TimeoutError(f"no {msg_type} for {msg_id} in {timeout:.0f} s") from None
        if msg["parent_header"].get("msg_id") == msg_id and msg["msg_type"] == msg_type:
            return msg


def interrupt_after(manager, seconds: float) -> dict:
    """Interrupt the kernel of `manager` `seconds` from now, in a thread; the returned dict gets the
    monotonic time of the interrupt under "at"."""
    sent: dict = {}

    def interrupt_later() -> None:
        time.sleep(seconds)
        sent["at"] = time.monotonic()
        manager.interrupt_kernel()

    threading.Thread(target=interrupt_later, daemon=True).start()
    return sent


def launch_kernel(kernel_name: str, env: dict) -> tuple:
    """Start a kernel by kernelspec name, its output in a log file; (manager, started client, log).

    The client's IOPub may not be subscribed yet: wait_for_ready (or the caller's own check) must see
    an IOPub message before a cell's output can be trusted to arrive.
    """
    if "IPYTHONDIR" not in env or env["IPYTHONDIR"] == os.environ.get("IPYTHONDIR"):
        # its own IPython history: kernels writing one SQLite file at once on a busy machine see
        # "database is locked", and IPython prints that into a cell's output
        env = dict(env, IPYTHONDIR=tempfile.mkdtemp(prefix="ipython-", dir=os.environ.get("IPYTHONDIR")))
    manager = KernelManager(kernel_name=kernel_name)
    record = new_log(f"kernel-{kernel_name}", alive=lambda: manager.has_kernel and manager.is_alive())
    with record.path.open("w") as handle:  # the kernel's own log: a failing test prints it
        manager.start_kernel(env=env, stdout=handle, stderr=subprocess.STDOUT)
    client = manager.client()
    client.start_channels()
    return manager, client, record


@dataclass
class CellResult:
    """The execute_reply of a cell and the IOPub messages it caused, in order."""

    reply: dict
    outputs: list = field(default_factory=list)

    @property
    def status(self) -> str:
        return self.reply["status"]

    def stream(self, name: str = "stdout") -> str:
        return "".join(
            m["content"]["text"]
            for m in self.outputs
            if m["msg_type"] == "stream" and m["content"]["name"] == name
        )

    def of_type(self, msg_type: str) -> list:
        return [m["content"] for m in self.outputs if m["msg_type"] == msg_type]

    @property
    def result(self) -> dict | None:
        results = self.of_type("execute_result")
        return results[0]["data"] if results else None

    @property
    def error(self) -> dict | None:
        errors = self.of_type("error")
        return errors[0] if errors else None


@dataclass
class KernelSession:
    """A running rpyc kernel and a blocking client to it."""

    manager: KernelManager
    client: object

    @classmethod
    def start(cls, board_port: int | None = None, env: dict | None = None, kernel_name: str = "rpyc"):
        kernel_env = dict(os.environ)
        if board_port is not None:
            kernel_env["RPYC_IKERNEL_HOST"] = "127.0.0.1"
            kernel_env["RPYC_IKERNEL_PORT"] = str(board_port)
        kernel_env.update(env or {})
        for attempt in range(3):
            manager, client, record = launch_kernel(kernel_name, kernel_env)
            try:
                client.wait_for_ready(timeout=60)
                return cls(manager, client)
            except RuntimeError:
                client.stop_channels()
                manager.shutdown_kernel(now=True)
                log = record.tail()
                # jupyter_client picks the kernel's ports before the kernel binds them: on a machine where
                # other tests open ports at the same moment, one may be taken in between. Start again.
                if "Address already in use" not in log or attempt == 2:
                    message = f"kernel {kernel_name} did not answer in 60 s; its log:\n{log}"
                    raise RuntimeError(message) from None
        raise AssertionError("unreachable")

    def run(
        self, code: str, timeout: float = 60, allow_stdin: bool = False, stdin_hook=None, **kwargs
    ) -> CellResult:
        outputs = []

        def keep(msg):
            if msg["msg_type"] not in ("status", "execute_input"):
                outputs.append(msg)

        reply = self.client.execute_interactive(
            code,
            timeout=timeout,
            output_hook=keep,
            allow_stdin=allow_stdin,
            stdin_hook=stdin_hook,
            **kwargs,
        )
        return CellResult(reply["content"], outputs)

    def run_after_error(self, code: str, timeout: float = 60) -> CellResult:
        """run(), for the first cell after a cell that ended in an error: ipykernel aborts requests that
        reach it before it has finished aborting after an error reply (its shell thread posts the end
        of the abort behind them), which a client that sends at once can hit on a busy machine."""
        result = self.run(code, timeout=timeout)
        if result.reply["status"] == "aborted":
            result = self.run(code, timeout=timeout)
        return result

    def request(self, method: str, *args, **kwargs) -> dict:
        """Send a shell request (complete, inspect, ...) and return its reply content."""
        msg_id = getattr(self.client, method)(*args, **kwargs)
        return reply_to(self.client, msg_id)["content"]

    def create_subshell(self) -> str:
        """A kernel subshell (ipykernel 7): requests sent to it run beside the main shell's cell."""
        msg = self.client.session.msg("create_subshell_request", {})
        self.client.control_channel.send(msg)
        return reply_to(self.client, msg["header"]["msg_id"], channel="control")["content"]["subshell_id"]

    def send(self, msg_type: str, content: dict, subshell_id: str | None = None) -> str:
        """Send a shell request without waiting; returns its msg_id (see wait_reply)."""
        msg = self.client.session.msg(msg_type, content)
        if subshell_id is not None:
            msg["header"]["subshell_id"] = subshell_id
        self.client.shell_channel.send(msg)
        return msg["header"]["msg_id"]

    def wait_reply(self, msg_id: str, timeout: float = 30) -> dict:
        """The reply to msg_id (whole message); replies to other requests are kept for later."""
        replies = self.__dict__.setdefault("_replies", {})
        deadline = time.monotonic() + timeout
        while msg_id not in replies:
            reply = self.client.get_shell_msg(timeout=max(0.01, deadline - time.monotonic()))
            replies[reply["parent_header"].get("msg_id")] = reply
        return replies.pop(msg_id)

    def stop(self) -> None:
        self.client.stop_channels()
        self.manager.shutdown_kernel(now=False)


def stop_process(process: subprocess.Popen, grace: float = 10) -> None:
    """SIGTERM, then SIGKILL after `grace` seconds, for a board server (or any process) a test started."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


# A board cell that changes `img_buffer` 30 times a second for {seconds} s (small JPEGs, each one
# different): a live image's producer for link tests and benchmarks.
LIVE_PRODUCER_CELL = """
import io, time
from PIL import Image
frames = []
for shade in range(30):
    out = io.BytesIO()
    Image.new('RGB', (64, 48), (8 * shade, 100, 30)).save(out, 'JPEG')
    frames.append(out.getvalue())
end, count = time.monotonic() + {seconds}, 0
while time.monotonic() < end:
    count += 1
    img_buffer = frames[count % 30] + count.to_bytes(4, 'big')  # every frame differs
    time.sleep(1 / 30)
"""
