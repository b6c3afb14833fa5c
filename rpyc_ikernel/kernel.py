"""RPycKernel: a Jupyter kernel whose cells run on a board reached through rpyc.

This module is the Jupyter side only: it turns execute/complete/inspect requests into calls on a
board (:class:`~rpyc_ikernel.board.BoardLike`: one Board, or a group standing for one) and publishes
what comes back with ipykernel's own helpers.
"""

from __future__ import annotations

import keyword
import re
import signal
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable

from ipykernel.iostream import OutStream
from ipykernel.ipkernel import IPythonKernel

from . import __version__
from .adb import adb_board, adb_requested
from .agent import wire
from .board import Board, BoardLike, CellOutcome, InputRequest, Notice
from .checks import host_name, port_number, seconds
from .commands import compile_command, find_commands, has_board_code, without_secrets
from .connector import Address, Connector, MisconfiguredConnector, connect_timeout
from .debugger import DebugAdapter, advertise
from .errors import BoardError
from .fleet import Fleet
from .handshake import parse_forward
from .ipython_syntax import to_board_code
from .liveimage import DEFAULT_INTERVAL, LiveImagePump, image_interval
from .outputs import BadOutput, check_bundle, check_error, check_event
from .status import format_rows, status_lines
from .transfer import ProgressDisplay, TransferResult, format_size
from .transfer import download as download_file
from .transfer import upload as upload_file

# `exit` / `quit` end a terminal frontend (jupyter console) as in IPython, instead of running on the board.
_EXIT_REQUEST = re.compile(r"^\s*(?:exit|quit)\s*(?:\(\s*\))?\s*;?\s*$")
LOCAL_OUTPUT_SLEEP = 0.0005  # ipykernel's Kernel._execute_sleep, kept for cells that run local commands
_HELP_SYNTAX = re.compile(r"^\s*(?:\?{1,2}\s*(?P<pre>[\w.]+)|(?P<post>[\w.]+)\s*(?P<marks>\?{1,2}))\s*$")


class QuickFlushOutStream(OutStream):
    """ipykernel's stdout/stderr, whose flush() returns at once when nothing was written since the last.

    ipykernel flushes both streams twice per request, and each flush waits for a round trip through
    its IO thread, although a board cell's output never passes through them: ~2 ms of every cell.
    Skipping is safe for the order of messages: whatever is sent later goes through the same IO
    thread, after a flush that is under way. (__main__ installs it: IPKernelApp.outstream_class.)
    """

    def flush(self) -> None:
        if self._flush_pending or self._subprocess_flush_pending or self.pub_thread is None:
            super().flush()


class RPycKernel(IPythonKernel):
    """IPython's kernel, with the code of every cell sent to a board."""

    implementation = "rpyc_ikernel"
    implementation_version = __version__

    @property
    def banner(self) -> str:
        """What `jupyter console` shows at start (kernel_info): the board cells will run on."""
        board = self.board
        problem = board.problem
        state = board.security if board.connected else "connects at the first cell"
        where = f"none usable: {problem}" if problem else f"{board.address} ({state})"
        return (
            f"rpyc_ikernel {__version__}: cells run on a board through rpyc.\n"
            f"Board: {where}\n"
            '# exec(self.connect_remote("HOST")) or # exec(self.connect_adb()) picks another.'
        )

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.session_id = uuid.uuid4().hex
        self.board: BoardLike = _default_board(self.session_id)
        self.board.warm_side_link = True  # the first interrupt must not wait for a connect
        self.local_namespace: dict = {"self": self}
        self._cell_running = threading.Event()
        self._waiting_for_input = False
        self._running_local_code = False  # a `# exec(...)` line runs: Ctrl-C raises KeyboardInterrupt in it
        # Ctrl-C during a request when neither a board cell nor local code runs (the cell not sent yet,
        # or its reply being made) stops the board cell of this request once it has started; a late
        # one ends with the request. Raising KeyboardInterrupt there would lose the request's reply.
        self._in_request = threading.Event()
        self._previous_cell_id: str | None = None
        self.live_images = LiveImagePump(lambda: self.board, self.session_id, self._publish_to_cell)
        self.fleet = Fleet(  # several boards at once (fleet.py): idle unless a cell names a group
            self.session_id,
            lambda: self.board,
            lambda msg_type, content: self.send_response(
                self.iopub_socket, msg_type, content, ident=self._topic(msg_type)
            ),
            self._publish_to_cell,
        )
        self.debug_adapter = DebugAdapter(
            self._debug_on_board,
            self._publish_debug_event,
            lambda: self.board.info.get("boot_id"),
            lambda data, metadata: check_bundle(data, metadata, self.board.trusted),
        )

    @property
    def kernel_info(self) -> dict:
        info = super().kernel_info
        info["implementation"] = self.implementation
        info["implementation_version"] = self.implementation_version
        info["banner"] = self.banner
        self.debug_adapter.available = self.board.info.get("debugger", True) is not False
        info["supported_features"] = advertise(info["supported_features"], self.debug_adapter.available)
        return info

    # ------------------------------------------------------------ the debugger (debugger.py)
    async def do_debug_request(self, msg: dict) -> dict:
        """JupyterLab's debugger, on the board: see debugger.DebugAdapter."""
        return await self.debug_adapter.process_request(msg)

    def _prepare_board_debugger(self) -> None:
        """A restarted board (or a new one) gets the debugger's breakpoints before the cell runs."""
        try:
            self.board.connect()
        except BoardError:
            return  # the cell reports it
        self.debug_adapter.before_cell(self.board.info.get("boot_id"))

    def _debug_on_board(self, command: str, arguments: dict) -> dict:
        return self.board.debug(command, arguments, beside_cell=self._cell_running.is_set())

    # ------------------------------------------------------------ commands users type in cells
    def connect_remote(
        self,
        host: str | None = None,
        port: int | None = None,
        timeout: float | None = None,
        token: str | None = None,
        tls: bool | None = None,
        ca: str | None = None,
        certfile: str | None = None,
        keyfile: str | None = None,
        allow_open: bool | None = None,
        forward: str | None = None,
        trusted: bool | None = None,
    ) -> None:
        """Use the board at host:port from now on.

        host may also be a name a board announces on the network (`pi-lab` or `pi-lab.local`, see
        discovery.py): its address, port and TLS come from the announcement unless given here.

        Unset values come from RPYC_IKERNEL_HOST/PORT/TOKEN/TLS/CA (environment or kernelspec), else
        127.0.0.1:18812, the local token file (loopback boards only) and no TLS. The board is connected
        at once, so a mistake shows in this cell; on failure the previous board stays selected.
        allow_open=True (or RPYC_IKERNEL_ALLOW_OPEN=1) accepts a board that checks no token even
        though this kernel has one; otherwise such a board is refused. forward="ADDRESS:PORT" names
        where the board server sees the connection arrive when host:port is a forward of yours (ssh -L,
        NAT): the token proof is bound to it, so a relay elsewhere cannot reuse it. trusted=True (or
        RPYC_IKERNEL_TRUST_BOARD_HTML=1) shows the board's JavaScript and HTML with script as they
        come; by default they are left out (see outputs.py).
        """
        if host is None and adb_requested():  # the default board of an `install --adb` preset
            return self.connect_adb(
                port=port,
                timeout=timeout,
                token=token,
                tls=tls,
                ca=ca,
                certfile=certfile,
                keyfile=keyfile,
                allow_open=allow_open,
                trusted=trusted,
            )
        host = None if host is None else host_name(host, "host")
        port = None if port is None else port_number(port, "port")
        timeout = connect_timeout(timeout)  # a bad value fails before any board is looked for
        if forward is not None:
            parse_forward(forward)  # a bad value fails here, in one line
        announced = _announced_board(host)
        if announced is not None:
            host, port = announced.address, port or announced.port
            tls = tls if tls is not None or announced.tls != "yes" else True
        default = Address.from_environment() if host is None or port is None else None
        address = Address(host or default.host, port or default.port)
        connector = Connector.configured(
            address,
            timeout,
            token=token,
            tls=tls,
            ca=ca,
            certfile=certfile,
            keyfile=keyfile,
            allow_open=allow_open,
            forward=forward,
        )
        self._switch_board(Board(connector, self.session_id, trusted=trusted))

    def boards(self, wait: float = 2.0) -> None:
        """Show the boards that announce themselves on the network (the table of `install --discover`)."""
        from .discovery import DiscoveryError, discover, table

        try:
            print(table(discover(seconds(wait, "wait", 2.0))))
        except DiscoveryError as exc:
            raise BoardError(str(exc)) from None

    def on(self, *boards: str) -> None:
        """Run the cells after this one on these boards at once (names, host[:port] or "all");
        self.on() goes back to the one board. See fleet.py."""
        self.fleet.on(*boards)

    def gather(self, expression: str, *boards: str) -> dict:
        """{board: value of expression there} from every board of the group (or the named boards)."""
        return self.fleet.gather(expression, *boards)

    def connect_adb(
        self,
        serial: str | None = None,
        port: int | None = None,
        timeout: float | None = None,
        token: str | None = None,
        tls: bool | None = None,
        ca: str | None = None,
        certfile: str | None = None,
        keyfile: str | None = None,
        allow_open: bool | None = None,
        trusted: bool | None = None,
    ) -> None:
        """Use the board on USB from now on: `adb forward` a free local port to its server port.

        serial picks one of several devices; port is the board server's port on the device (18812,
        or the preset's). The forward is removed when the kernel leaves this board or shuts down.
        token, the TLS options and trusted are connect_remote's; without a token, a board that asks
        for one gets its own, read through adb (said once in the cell).
        """
        port = None if port is None else port_number(port, "port")
        board = adb_board(
            self.session_id,
            serial,
            port,
            trusted=trusted,
            timeout=timeout,
            token=token,
            tls=tls,
            ca=ca,
            certfile=certfile,
            keyfile=keyfile,
            allow_open=allow_open,
        )
        self._switch_board(board, route=lambda: f" (adb forward from 127.0.0.1:{board.tunnel.local_port})")

    def _switch_board(self, board: BoardLike, route: Callable[[], str] = str) -> None:
        """Connect `board` and make it the kernel's board from now on, closing the one before.

        On failure the previous board stays selected and the new one is closed (with any tunnel made
        for it). Live images follow on their own: the LiveImagePump reconnects to whatever self.board is.
        route() adds how the board is reached to the "Connected" line (known once it is connected).
        """
        board.warm_side_link = True
        try:
            board.connect()
        except BaseException:
            board.close()
            raise
        notices = board.take_notices()  # said once, below the line that says what connecting established
        self.board.close()
        self.board = board
        info = board.info
        print(
            f"Connected to board {board.address}{route()}: Python {info.get('python', '?')}"
            f" on {info.get('platform', '?')} [{board.security}]"
        )
        for notice in notices:
            print(f"rpyc_ikernel: {notice.text}", file=sys.stderr)

    def status(self) -> None:
        """Show the board: address, Python, platform, uptime, latency, auth and TLS."""
        facts, error = None, None
        try:
            facts = self.board.status()
        except BoardError as exc:
            error = str(exc)
        rows = status_lines(str(self.board.address), self.board.route(), facts, error, self.board.security)
        print(format_rows(rows))

    def upload(self, local_path: str, remote_path: str | None = None, compress: bool = False) -> None:
        """Copy a file of this machine to the board, in chunks, with progress and a checksum check."""
        progress = self._transfer_progress(f"upload {local_path}")
        result = upload_file(self.board, local_path, remote_path, progress.update, compress=compress)
        print(_transfer_summary("Uploaded", result.source, f"board:{result.destination}", result))

    def download(
        self,
        remote_path: str,
        local_path: str | None = None,
        compress: bool = False,
        overwrite: bool | None = None,
    ) -> None:
        """Copy a board file to this machine, in chunks, with progress and a checksum check.

        The local name comes from local_path, else from remote_path's last part (never from the
        board). An existing file is replaced when local_path names it, or with overwrite=True; a
        name taken from remote_path does not replace one unless overwrite=True.
        """
        progress = self._transfer_progress(f"download board:{remote_path}")
        result = download_file(
            self.board, remote_path, local_path, progress.update, compress=compress, overwrite=overwrite
        )
        print(_transfer_summary("Downloaded", f"board:{result.source}", result.destination, result))

    def _transfer_progress(self, label: str) -> ProgressDisplay:
        def publish(msg_type: str, data: dict, transient: dict) -> None:
            self._publish_bundle(msg_type, data, {}, transient)

        return ProgressDisplay(label, publish)

    def display(self, name: str, interval: float = DEFAULT_INTERVAL) -> None:
        """Show board variable `name` live in this cell: JPEG/PNG/GIF/BMP bytes or a PIL image.

        The display updates in place whenever the frame changes (looked at every `interval`
        seconds) until stop_display(), an interrupt, or the kernel's shutdown.
        """
        if not isinstance(name, str) or not name.isidentifier() or keyword.iskeyword(name):
            raise ValueError(f'display() takes the name of a board variable, e.g. "img_buffer"; got {name!r}')
        if self.fleet.group is not None:  # one image per board of the group, side by side
            return self.fleet.display(name, image_interval(interval), self.get_parent())
        self.live_images.start(name, image_interval(interval), self.get_parent())

    def stop_display(self, name: str | None = None) -> None:
        """Stop the live image of `name`, or all of them; each display keeps its last frame."""
        running = self.live_images.names
        stopped = self.live_images.stop(name) + self.fleet.stop_display(name)
        if stopped:
            print("Stopped live image" + ("s " if len(stopped) > 1 else " ") + ", ".join(stopped))
        elif name is None:
            print("No live image is running")
        else:
            others = f" (running: {', '.join(running)})" if running else ""
            print(f"No live image of {name!r} is running{others}")

    def _publish_to_cell(self, msg_type: str, content: dict, parent: dict) -> None:
        """Publish from any thread, as output of the cell whose request is `parent`."""
        self.session.send(self.iopub_socket, msg_type, content, parent=parent, ident=self._topic(msg_type))

    def _stop_displays_on_sigint(self, signum, frame) -> None:
        def stop() -> None:
            self.live_images.stop()
            self.fleet.stop_display()

        threading.Thread(target=stop, name="stop live images", daemon=True).start()

    # ------------------------------------------------------------ execution
    def pre_handler_hook(self) -> None:
        """During a request, Ctrl-C/interrupt stops the board's cell instead of the kernel's own thread."""
        if threading.current_thread() is not threading.main_thread():
            return  # a subshell's request (e.g. a completion during a cell): signals stay as they are
        self._in_request.set()
        self.saved_sigint_handler = signal.signal(signal.SIGINT, self._on_sigint)

    def post_handler_hook(self) -> None:
        """Between requests ipykernel ignores SIGINT; with live images running, it stops them."""
        if threading.current_thread() is not threading.main_thread():
            return  # subshell requests never touched the signal handlers
        self._in_request.clear()
        super().post_handler_hook()
        if self.live_images.names or self.fleet.displaying:
            signal.signal(signal.SIGINT, self._stop_displays_on_sigint)

    def _on_sigint(self, signum, frame) -> None:
        self._stop_displays_on_sigint(signum, frame)
        self.fleet.interrupt()  # a cell on several boards: every board stops
        if self._running_local_code or self._waiting_for_input:
            raise KeyboardInterrupt()  # caught where that code runs: its cell ends with KeyboardInterrupt
        if self._in_request.is_set():
            threading.Thread(
                target=self._interrupt_this_requests_cell,
                args=(self._previous_cell_id,),
                name="board interrupt",
                daemon=True,
            ).start()

    def _interrupt_this_requests_cell(self, previous: str | None) -> None:
        """Interrupt the board cell of the current request: now if it runs, else as soon as it has
        reached the board (its id differs from the previous cell's); nothing once the request ended."""
        while self._in_request.is_set():
            cell_id = self.board.running_cell_id
            if self._cell_running.is_set() and cell_id is not None and cell_id != previous:
                if self.board.interrupt(cell_id):
                    return  # the board stopped it
                # the link is still connecting, or the cell has not reached the board: try again
            time.sleep(0.05)

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
        store_history = store_history and not silent  # as IPython: a silent cell leaves no trace
        if store_history:  # a token typed in a # exec line must not reach the history database
            stored = without_secrets(code)
            shell.history_manager.store_inputs(count, stored, stored)
            shell.execution_count += 1
        self._allow_stdin = allow_stdin
        # ipykernel sleeps 0.5 ms after each cell so that local output reaches the frontend before
        # the reply; a board cell's output was published before its reply already.
        self._execute_sleep = LOCAL_OUTPUT_SLEEP if find_commands(code) else 0.0
        reply = self._run_local_commands(code)
        if reply is None:
            help_request = _HELP_SYNTAX.match(code)
            if help_request:
                reply = self._page_help(help_request)
            elif _EXIT_REQUEST.match(code):
                reply = {"status": "ok", "payload": [{"source": "ask_exit", "keepkernel": False}]}
            elif self.fleet.takes(code):  # %%boards, or a group of self.on(...): fleet.py
                self._cell_running.set()  # the kernel's own board may be in the group: ask beside it
                try:
                    reply = self.fleet.run_cell(code, count, silent, store_history)
                except BoardError as exc:  # a setting that does not parse: one line, as for one board
                    reply = self._error_reply(type(exc).__name__, str(exc), [f"{type(exc).__name__}: {exc}"])
                finally:
                    self._cell_running.clear()
            elif has_board_code(code):
                board_code = to_board_code(code)
                # while debugging, cells get the file names the front end maps breakpoints with
                filename = None
                if self.debug_adapter.started:
                    filename = self.debug_adapter.cell_file(code)
                    self.debug_adapter.name_cell(filename, f"<cell-{count}>")
                    self._prepare_board_debugger()
                reply = self._run_on_board(
                    board_code,
                    count,
                    silent,
                    allow_stdin,
                    user_expressions or {},
                    store_history,
                    code,
                    filename,
                )
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
                self._running_local_code = True
                try:
                    value = eval(compiled, self.local_namespace)  # noqa: S307 - the user's own command
                finally:
                    self._running_local_code = False
                if is_expression and value is not None:
                    self._publish_bundle("display_data", {"text/plain": repr(value)}, {})
            except BaseException as exc:
                self._running_local_code = False
                lines = traceback.format_exception_only(type(exc), exc)
                summary = lines[-1].strip() if lines else type(exc).__name__
                reason = f"local command on line {command.line} failed: {summary}"
                return self._error_reply(type(exc).__name__, str(exc), [reason, f"    {command.comment}"])
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
        return None

    def _run_on_board(
        self,
        code: str,
        count: int,
        silent: bool,
        allow_stdin: bool,
        user_expressions: dict,
        store_history: bool = True,
        raw: str | None = None,
        filename: str | None = None,
    ) -> dict:
        filename = filename or f"<cell-{count}>"
        history_count = count if store_history else None
        self._cell_running.set()
        try:
            cell = self.board.run_cell(
                code,
                filename,
                allow_stdin=allow_stdin,
                silent=silent,
                count=history_count,
                raw=None if raw == code else raw,
            )
            for item in cell:
                if isinstance(item, CellOutcome):
                    return self._finish_cell(item, count, silent, user_expressions)
                if isinstance(item, InputRequest):
                    self._answer_input(item)
                elif isinstance(item, Notice):
                    self._publish_event(wire.stream_event("stderr", f"rpyc_ikernel: {item.text}\n"))
                else:
                    self._publish_event(item)
        except BoardError as exc:
            return self._error_reply(type(exc).__name__, str(exc), [f"{type(exc).__name__}: {exc}"])
        except Exception as exc:  # an answer a broken or hostile board made up: still one line and a reply
            self.board.close()
            detail = (str(exc).splitlines() or [""])[0][:200]
            text = (
                f"board {self.board.address} sent an answer this kernel cannot use"
                f" ({type(exc).__name__}: {detail}); closed the link. The next cell reconnects."
            )
            return self._error_reply("BoardMisbehaved", text, [f"BoardMisbehaved: {text}"])
        finally:
            self._cell_running.clear()
            self._previous_cell_id = self.board.running_cell_id
            self.debug_adapter.cell_ended()
        return self._error_reply("BoardError", "the board ended the cell without a reply", [])

    def _finish_cell(self, outcome: CellOutcome, count: int, silent: bool, user_expressions: dict) -> dict:
        reply = outcome.reply
        if reply.get("status") == "error":
            ename, evalue, lines = check_error(reply)
            return self._error_reply(ename, evalue, self.debug_adapter.readable_traceback(lines))
        if outcome.result is not None and not silent:
            if not isinstance(outcome.result, dict):
                raise BadOutput("a cell's result is not a mapping")
            data, metadata = check_bundle(
                outcome.result.get("data"), outcome.result.get("metadata"), self.board.trusted
            )
            self.send_response(
                self.iopub_socket,
                "execute_result",
                {"execution_count": count, "data": data, "metadata": metadata},
                ident=self._topic("execute_result"),
            )
        expressions = self.board.evaluate(user_expressions) if user_expressions else {}
        return {
            "status": "ok",
            "user_expressions": self._checked_expressions(expressions),
            "payload": _checked_payloads(reply.get("payload", [])),
        }

    def _checked_expressions(self, expressions: object) -> dict:
        """user_expressions from the board: each a bundle (checked as output) or an error."""
        if not isinstance(expressions, dict):
            raise BadOutput("user_expressions is not a mapping")
        checked = {}
        for name, value in expressions.items():
            if isinstance(value, dict) and value.get("status") == "ok":
                data, metadata = check_bundle(value.get("data"), value.get("metadata"), self.board.trusted)
                checked[str(name)] = {"status": "ok", "data": data, "metadata": metadata}
            else:
                ename, evalue, traceback_lines = check_error(value)
                checked[str(name)] = {
                    "status": "error",
                    "ename": ename,
                    "evalue": evalue,
                    "traceback": traceback_lines,
                }
        return checked

    def _answer_input(self, request: InputRequest) -> None:
        """Ask the frontend for the board's input(); Ctrl-C there interrupts the board's cell.

        On Ctrl-C the board gets the interrupt alone: its input() raises KeyboardInterrupt. An "end of
        input" answer sent with it could win the race on a busy board (EOFError instead), or answer
        the next input() of code that catches the interrupt. Only if the interrupt found no cell to
        stop is input() answered with EOF, so nothing on the board waits forever.
        """
        self._waiting_for_input = True
        try:
            if request.password:
                value = self.getpass(request.prompt)
            else:
                value = self.raw_input(request.prompt)
        except EOFError:
            value = None
        except KeyboardInterrupt:
            if self.board.interrupt(self.board.running_cell_id):
                return
            value = None
        finally:
            self._waiting_for_input = False
        self.board.answer_input(value)

    def _publish_event(self, event: dict) -> None:
        """An output event of the agent (see agent/wire.py), checked: only cell output, and script only
        from a trusted board (outputs.py); anything else is dropped with one line saying so. The board's
        debugger events (stopped, continued) go to the debug adapter, which passes on checked fields."""
        if isinstance(event, dict) and event.get("msg_type") == "debug_event":
            content = self.debug_adapter.board_event(event.get("content"))
            if content is not None:
                self.send_response(
                    self.iopub_socket, "debug_event", content, ident=self._topic("debug_event")
                )
            return
        try:
            msg_type, content = check_event(event, self.board.trusted)
        except BadOutput as exc:
            msg_type, content = (
                "stream",
                {"name": "stderr", "text": f"rpyc_ikernel: dropped board output: {exc}\n"},
            )
        self.send_response(self.iopub_socket, msg_type, content, ident=self._topic(msg_type))

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
        data, _ = check_bundle(found.get("data"), {}, self.board.trusted)
        payload = {"source": "page", "data": data, "start": 0}
        return {"status": "ok", "payload": [payload], "user_expressions": {}}

    # ------------------------------------------------------------ completion and inspection
    async def do_complete(self, code: str, cursor_pos: int | None) -> dict:
        cursor_pos = len(code) if cursor_pos is None else cursor_pos
        try:
            found = self.board.complete(code, cursor_pos, beside_cell=self._cell_running.is_set())
            return _checked_completions(found, len(code))
        except Exception:  # a BoardError, or what a broken or hostile board answered
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
            found = self.board.inspect(
                code, cursor_pos, detail_level, beside_cell=self._cell_running.is_set()
            )
            data, metadata = check_bundle(
                found.get("data", {}), found.get("metadata", {}), self.board.trusted
            )
            return {"status": "ok", "found": bool(found.get("found")), "data": data, "metadata": metadata}
        except Exception:  # a BoardError, or what a broken or hostile board answered
            return {"status": "ok", "found": False, "data": {}, "metadata": {}}

    def do_shutdown(self, restart: bool) -> dict:
        self.live_images.close()
        self.fleet.close()
        self.board.close()
        return super().do_shutdown(restart)


def _default_board(session_id: str) -> Board:
    """The board the kernel's settings name; a board that explains the mistake if they are wrong.

    A bad RPYC_IKERNEL_PORT must not stop the kernel from starting: every cell then says what to fix.
    """
    try:
        if adb_requested():
            return adb_board(session_id)
        return Board(Address.from_environment(), session_id)
    except BoardError as exc:
        return Board(MisconfiguredConnector(str(exc)), session_id, trusted=False)


def _announced_board(host: str | None):
    """The board announcing `host` on the network, when host is such a name (discovery.wants_discovery)."""
    if host is None:
        return None
    from .discovery import DiscoveryError, resolve, wants_discovery

    if not wants_discovery(host):
        return None
    try:
        return resolve(host)
    except DiscoveryError as exc:
        if host.lower().rstrip(".").endswith(".local"):
            return None  # not one of ours: the system's resolver (avahi/nss-mdns) may still know it
        raise BoardError(str(exc)) from None


def _transfer_summary(verb: str, source: str, destination: str, result: TransferResult) -> str:
    return (
        f"{verb} {source} -> {destination}: {format_size(result.size)} in {result.seconds:.2f} s"
        f" ({format_size(result.rate)}/s), sha256 {result.sha256[:12]}... matches on both sides"
    )


def _checked_payloads(payloads: object) -> list:
    """The board's reply payloads: only set_next_input (as IPython's shell makes it), text checked."""
    checked = []
    for payload in payloads if isinstance(payloads, list) else []:
        if isinstance(payload, dict) and payload.get("source") == "set_next_input":
            text = payload.get("text")
            if isinstance(text, str):
                checked.append(
                    {"source": "set_next_input", "text": text, "replace": bool(payload.get("replace"))}
                )
    return checked


def _checked_completions(found: object, length: int) -> dict:
    """A complete_reply made afresh from the board's answer: text matches, cursors inside the code, the
    experimental types only as plain text fields (what IPython sends); BadOutput for anything else."""
    if not isinstance(found, dict) or not isinstance(found.get("matches"), list):
        raise BadOutput("completions are not a list")
    matches = found["matches"]
    if not all(isinstance(match, str) for match in matches):
        raise BadOutput("a completion is not text")
    start, end = found.get("cursor_start"), found.get("cursor_end")
    if not all(isinstance(value, int) and not isinstance(value, bool) for value in (start, end)):
        raise BadOutput("completion cursors are not numbers")
    start, end = min(max(start, 0), length), min(max(end, 0), length)
    types = []
    metadata = found.get("metadata")
    experimental = metadata.get("_jupyter_types_experimental") if isinstance(metadata, dict) else None
    for entry in experimental if isinstance(experimental, list) else []:
        if isinstance(entry, dict):
            kept = {key: entry[key] for key in ("start", "end") if isinstance(entry.get(key), int)}
            kept.update(
                {key: entry[key] for key in ("text", "type", "signature") if isinstance(entry.get(key), str)}
            )
            types.append(kept)
    checked_metadata = {"_jupyter_types_experimental": types} if types else {}
    return {
        "status": "ok",
        "matches": matches,
        "cursor_start": start,
        "cursor_end": min(max(end, start), length),
        "metadata": checked_metadata,
    }
