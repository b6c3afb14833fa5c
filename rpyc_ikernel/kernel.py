"""RPycKernel: a Jupyter kernel whose cells run on a board reached through rpyc.

This module is the Jupyter side only: it turns execute/complete/inspect requests into calls on a
:class:`~rpyc_ikernel.board.Board` and publishes what comes back with ipykernel's own helpers.
"""

from __future__ import annotations

import re
import signal
import sys
import threading
import traceback
import uuid

from ipykernel.ipkernel import IPythonKernel

from . import __version__
from .board import Address, Board, BoardError, CellOutcome, InputRequest
from .commands import compile_command, find_commands, has_board_code

# `exit` / `quit` end a terminal frontend (jupyter console) as in IPython, instead of running on the board.
_EXIT_REQUEST = re.compile(r"^\s*(?:exit|quit)\s*(?:\(\s*\))?\s*;?\s*$")
_HELP_SYNTAX = re.compile(r"^\s*(?:\?{1,2}\s*(?P<pre>[\w.]+)|(?P<post>[\w.]+)\s*(?P<marks>\?{1,2}))\s*$")


class RPycKernel(IPythonKernel):
    """IPython's kernel, with the code of every cell sent to a board."""

    implementation = "rpyc_ikernel"
    implementation_version = __version__
    banner = (
        "rpyc_ikernel: cells run on a board through rpyc.\n"
        '# exec(self.connect_remote("HOST")) picks the board; the default comes from RPYC_IKERNEL_HOST.'
    )

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.session_id = uuid.uuid4().hex
        self.board = Board(Address.from_environment(), self.session_id)
        self.local_namespace: dict = {"self": self}
        self._cell_running = threading.Event()
        self._waiting_for_input = False

    @property
    def kernel_info(self) -> dict:
        info = super().kernel_info
        info["implementation"] = self.implementation
        info["implementation_version"] = self.implementation_version
        info["banner"] = self.banner
        return info

    # ------------------------------------------------------------ commands users type in cells
    def connect_remote(
        self, host: str | None = None, port: int | None = None, timeout: float | None = None
    ) -> None:
        """Use the board at host:port from now on (defaults: RPYC_IKERNEL_HOST/PORT, else 127.0.0.1:18812)."""
        default = Address.from_environment()
        address = Address(host or default.host, int(port) if port is not None else default.port)
        board = Board(address, self.session_id, **({"connect_timeout": timeout} if timeout else {}))
        board.connect()
        self.board.close()
        self.board = board
        info = board.info
        print(
            f"Connected to board {address}: Python {info.get('python', '?')} on {info.get('platform', '?')}"
        )

    # ------------------------------------------------------------ execution
    def pre_handler_hook(self) -> None:
        """During a request, Ctrl-C/interrupt stops the board's cell instead of the kernel's own thread."""
        self.saved_sigint_handler = signal.signal(signal.SIGINT, self._on_sigint)

    def _on_sigint(self, signum, frame) -> None:
        if self._cell_running.is_set() and not self._waiting_for_input:
            threading.Thread(target=self.board.interrupt, name="board interrupt", daemon=True).start()
            return
        raise KeyboardInterrupt()

    async def do_execute(
        self,
        code: str,
        silent: bool,
        store_history: bool = True,
        user_expressions: dict | None = None,
        allow_stdin: bool = False,
        *,
        cell_meta=None,
        cell_id=None,
    ) -> dict:
        shell = self.shell
        count = shell.execution_count
        if store_history:
            shell.history_manager.store_inputs(count, code, code)
            shell.execution_count += 1
        self._allow_stdin = allow_stdin
        reply = self._run_local_commands(code)
        if reply is None:
            help_request = _HELP_SYNTAX.match(code)
            if help_request:
                reply = self._page_help(help_request)
            elif _EXIT_REQUEST.match(code):
                reply = {"status": "ok", "payload": [{"source": "ask_exit", "keepkernel": False}]}
            elif has_board_code(code):
                reply = self._run_on_board(code, count, silent, allow_stdin, user_expressions or {})
            else:
                reply = {"status": "ok", "user_expressions": {}}
        reply["execution_count"] = shell.execution_count - 1  # as IPython reports it
        reply.setdefault("payload", [])
        reply.setdefault("user_expressions", {})
        return reply

    def _run_local_commands(self, code: str) -> dict | None:
        """Run the cell's `# exec(...)` lines in the kernel; an error reply stops the cell."""
        for command in find_commands(code):
            try:
                compiled, is_expression = compile_command(command)
                value = eval(compiled, self.local_namespace)  # noqa: S307 - the user's own command
                if is_expression and value is not None:
                    self._publish_bundle("display_data", {"text/plain": repr(value)}, {})
            except BaseException as exc:
                lines = traceback.format_exception_only(type(exc), exc)
                summary = lines[-1].strip() if lines else type(exc).__name__
                reason = f"local command on line {command.line} failed: {summary}"
                return self._error_reply(type(exc).__name__, str(exc), [reason, f"    {command.comment}"])
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
        return None

    def _run_on_board(
        self, code: str, count: int, silent: bool, allow_stdin: bool, user_expressions: dict
    ) -> dict:
        filename = f"<cell-{count}>"
        self._cell_running.set()
        try:
            for item in self.board.run_cell(code, filename, allow_stdin=allow_stdin, silent=silent):
                if isinstance(item, CellOutcome):
                    return self._finish_cell(item, count, silent, user_expressions)
                if isinstance(item, InputRequest):
                    self._answer_input(item)
                else:
                    self._publish_event(item)
        except BoardError as exc:
            return self._error_reply(type(exc).__name__, str(exc), [f"{type(exc).__name__}: {exc}"])
        finally:
            self._cell_running.clear()
        return self._error_reply("BoardError", "the board ended the cell without a reply", [])

    def _finish_cell(self, outcome: CellOutcome, count: int, silent: bool, user_expressions: dict) -> dict:
        reply = outcome.reply
        if reply.get("status") == "error":
            return self._error_reply(reply["ename"], reply["evalue"], reply["traceback"])
        if outcome.result is not None and not silent:
            self.send_response(
                self.iopub_socket,
                "execute_result",
                {
                    "execution_count": count,
                    "data": outcome.result["data"],
                    "metadata": outcome.result["metadata"],
                },
                ident=self._topic("execute_result"),
            )
        expressions = self.board.evaluate(user_expressions) if user_expressions else {}
        return {"status": "ok", "user_expressions": expressions}

    def _answer_input(self, request: InputRequest) -> None:
        self._waiting_for_input = True
        try:
            if request.password:
                value = self.getpass(request.prompt)
            else:
                value = self.raw_input(request.prompt)
        except EOFError:
            value = None
        except KeyboardInterrupt:
            self.board.interrupt()
            value = None
        finally:
            self._waiting_for_input = False
        self.board.answer_input(value)

    def _publish_event(self, event: list) -> None:
        kind = event[0]
        if kind == "stream":
            self.send_response(
                self.iopub_socket, "stream", {"name": event[1], "text": event[2]}, ident=self._topic("stream")
            )
        elif kind in ("display", "update_display"):
            msg_type = "update_display_data" if kind == "update_display" else "display_data"
            self._publish_bundle(msg_type, event[1], event[2], event[3])
        elif kind == "clear_output":
            self.send_response(
                self.iopub_socket, "clear_output", {"wait": event[1]}, ident=self._topic("clear_output")
            )

    def _publish_bundle(
        self, msg_type: str, data: dict, metadata: dict, transient: dict | None = None
    ) -> None:
        content = {"data": data, "metadata": metadata, "transient": transient or {}}
        self.send_response(self.iopub_socket, msg_type, content, ident=self._topic(msg_type))

    def _error_reply(self, ename: str, evalue: str, traceback_lines: list) -> dict:
        content = {"ename": ename, "evalue": evalue, "traceback": traceback_lines}
        self.send_response(self.iopub_socket, "error", content, ident=self._topic("error"))
        return {"status": "error", **content}

    def _page_help(self, match: re.Match) -> dict:
        """`obj?` / `obj??` show the board object's help in the pager, like IPython."""
        name = match.group("pre") or match.group("post")
        detail = (
            1
            if (match.group("marks") or "").startswith("??") or match.group(0).lstrip().startswith("??")
            else 0
        )
        try:
            found = self.board.inspect(name, len(name), detail)
        except BoardError as exc:
            return self._error_reply(type(exc).__name__, str(exc), [f"{type(exc).__name__}: {exc}"])
        if not found.get("found"):
            return self._error_reply(
                "NameError",
                f"Object `{name}` not found on the board.",
                [f"Object `{name}` not found on the board."],
            )
        payload = {"source": "page", "data": found["data"], "start": 0}
        return {"status": "ok", "payload": [payload], "user_expressions": {}}

    # ------------------------------------------------------------ completion and inspection
    async def do_complete(self, code: str, cursor_pos: int | None) -> dict:
        cursor_pos = len(code) if cursor_pos is None else cursor_pos
        try:
            return self.board.complete(code, cursor_pos)
        except BoardError:
            return {
                "status": "ok",
                "matches": [],
                "cursor_start": cursor_pos,
                "cursor_end": cursor_pos,
                "metadata": {},
            }

    async def do_inspect(
        self, code: str, cursor_pos: int | None, detail_level: int = 0, omit_sections=()
    ) -> dict:
        cursor_pos = len(code) if cursor_pos is None else cursor_pos
        try:
            return self.board.inspect(code, cursor_pos, detail_level)
        except BoardError:
            return {"status": "ok", "found": False, "data": {}, "metadata": {}}

    def do_shutdown(self, restart: bool) -> dict:
        self.board.close()
        return super().do_shutdown(restart)
