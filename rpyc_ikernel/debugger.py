"""JupyterLab's debugger for cells that run on the board: DAP on the control channel <-> agent/debugger.py.

ipykernel's own debugger starts debugpy in the kernel process, where no cell of ours runs. This adapter
answers the same requests (``debug_request`` -> ``debug_reply``; events as ``debug_event`` on iopub)
by asking the board: breakpoints, stack, variables and stepping are the board's (agent/debugger.py).
Jupyter's additions are answered as ipykernel answers them: ``debugInfo`` announces how cell file
names are made (murmur2 of the cell's text, with ipykernel's seed), ``dumpCell`` gives a cell's name,
``inspectVariables`` / ``richInspectVariables`` / ``copyToGlobals`` read the board's namespace.
Nothing else in the kernel knows DAP.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from collections.abc import Callable

from ipykernel.compiler import get_tmp_hash_seed, murmur2_x86

from .errors import BoardError

# Requests answered whether or not the debugger is started (as ipykernel's static_debug_msg_types).
STATIC_COMMANDS = ("debugInfo", "inspectVariables", "richInspectVariables", "modules", "copyToGlobals")
EXCEPTION_FILTERS = [
    {"filter": "raised", "label": "Raised Exceptions", "default": False},
    {"filter": "uncaught", "label": "Uncaught Exceptions", "default": False},
]
# The events a board may send, with the body fields (and their types) passed on.
_STOPPED = {"reason": str, "threadId": int, "allThreadsStopped": bool, "text": str, "description": str}
BOARD_EVENTS = {"stopped": _STOPPED, "continued": {"threadId": int, "allThreadsContinued": bool}}
MAX_EVENT_TEXT = 1000
CAPABILITIES = {
    "supportsConfigurationDoneRequest": True,
    "supportsConditionalBreakpoints": True,
    "supportsEvaluateForHovers": True,
    "supportsDelayedStackTraceLoading": True,
    "supportsExceptionInfoRequest": False,
    "supportsSetVariable": False,
    "exceptionBreakpointFilters": EXCEPTION_FILTERS,
}


def advertise(supported_features: list, available: bool) -> list:
    """kernel_info's supported_features: "debugger" exactly when this kernel's board can debug."""
    features = [feature for feature in supported_features if feature != "debugger"]
    return [*features, "debugger"] if available else features


class DebugAdapter:
    """The kernel's end of the board debugger: one per kernel, for whatever board it uses now.

    `call(command, arguments)` asks the board's agent (Board.debug); `publish(content)` sends a
    debug_event on iopub; `board_boot_id()` names the board process last connected.
    """

    def __init__(
        self,
        call: Callable[[str, dict], dict],
        publish: Callable[[dict], None],
        board_boot_id: Callable[[], str | None] = lambda: None,
        check_bundle: Callable[[object, object], tuple] | None = None,
    ) -> None:
        self.call = call
        self.publish = publish
        self.board_boot_id = board_boot_id
        # a rich variable is board output like any other: checked as outputs.py checks cells' output
        self.check_bundle = check_bundle or (lambda data, metadata: (data, metadata))
        self.started = False
        self.available = True  # False once a board said it cannot debug
        self.breakpoints: dict[str, list] = {}
        self.stopped_threads: set[int] = set()
        self._cell_names: dict[str, str] = {}  # cell file name -> <cell-N>, for tracebacks
        self._requested: dict[str, list] = {}  # setBreakpoints as asked, to give a restarted board
        self._filters: list = []
        self._boot_id: str | None = None  # the board process that has our state
        self.prefix = os.path.join(tempfile.gettempdir(), f"rpyc_ikernel_{os.getpid()}") + os.sep
        self._seq = 0

    def cell_file(self, code: str) -> str:
        """The file name a cell is compiled with on the board, as the front end computes it."""
        return f"{self.prefix}{murmur2_x86(code, get_tmp_hash_seed())}.py"

    def name_cell(self, path: str, name: str) -> None:
        """Tracebacks show `name` (<cell-N>, as without the debugger) for the cell compiled as `path`."""
        self._cell_names[path] = name

    def readable_traceback(self, lines: list) -> list:
        """Traceback lines with the cells' debugger file names replaced by their <cell-N> names."""
        if not self._cell_names:
            return lines
        readable = []
        for line in lines:
            if self.prefix in line:
                for path, name in self._cell_names.items():
                    line = line.replace(f'"{path}"', f'"{name}"')
            readable.append(line)
        return readable

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def board_event(self, content: object) -> dict | None:
        """A debug event the board sent, checked (only stopped/continued, with plain fields), ready for
        iopub; None for anything else (a board must not make the front end show what it likes)."""
        if not isinstance(content, dict) or content.get("event") not in BOARD_EVENTS:
            return None
        body = content.get("body") if isinstance(content.get("body"), dict) else {}
        checked = {}
        for key, kind in BOARD_EVENTS[content["event"]].items():
            value = body.get(key)
            if isinstance(value, kind) and (kind is not int or not isinstance(value, bool)):
                checked[key] = value[:MAX_EVENT_TEXT] if isinstance(value, str) else value
        return self.event({"type": "event", "event": content["event"], "body": checked})

    def event(self, content: dict) -> dict:
        """A debug event ready for iopub: numbered, the stopped threads noted."""
        body = content.get("body") or {}
        if content.get("event") == "stopped":
            self.stopped_threads.add(body.get("threadId", 1))
        elif content.get("event") == "continued":
            self.stopped_threads.clear()
        return {**content, "seq": self._next_seq()}

    def cell_ended(self) -> None:
        """The cell is over: a stop it ended in (interrupt, board lost) is over for the front end too."""
        if self.stopped_threads:
            event = {
                "type": "event",
                "event": "continued",
                "body": {"threadId": 1, "allThreadsContinued": True},
            }
            self.publish(self.event(event))
        self.stopped_threads.clear()

    def before_cell(self, boot_id: str | None) -> None:
        """While started: a board process met for the first time (restarted, or another board) gets the
        debugger's state again (started, breakpoints, exception filters); a reconnect keeps it."""
        if not self.started or boot_id is None or boot_id == self._boot_id:
            return
        self._boot_id = boot_id
        try:
            self.call("start", {})
            for path, points in self._requested.items():
                self.call("setBreakpoints", {"source": {"path": path}, "breakpoints": points})
            if self._filters:
                self.call("setExceptionBreakpoints", {"filters": self._filters})
        except BoardError:
            self._boot_id = None  # the cell itself reports the board's trouble

    # ------------------------------------------------------------ requests
    async def process_request(self, message: dict) -> dict:
        """The debug_reply content for one debug_request."""
        command = message.get("command", "")
        handler = getattr(self, "_" + command, None)
        if command in STATIC_COMMANDS or self.started or command == "initialize":
            if handler is not None:
                return await handler(message)
            return await self._forward(message)
        return {}  # as ipykernel: requests before initialize get an empty reply

    def _response(
        self, message: dict, success: bool = True, body: dict | None = None, text: str = ""
    ) -> dict:
        reply = {
            "seq": self._next_seq(),
            "type": "response",
            "request_seq": message.get("seq", 0),
            "success": success,
            "command": message.get("command", ""),
            "body": body if body is not None else {},
        }
        if text:
            reply["message"] = text
        return reply

    async def _board(self, command: str, arguments: dict) -> dict:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(None, self.call, command, arguments)
        except BoardError as exc:
            return {"success": False, "message": f"debugger: {exc}"}
        except Exception as exc:
            return {
                "success": False,
                "message": f"debugger: the board did not answer ({type(exc).__name__}: {exc})",
            }

    async def _forward(
        self, message: dict, command: str | None = None, arguments: dict | None = None
    ) -> dict:
        answer = await self._board(
            command or message["command"], message.get("arguments") or {} if arguments is None else arguments
        )
        if not isinstance(answer, dict) or not isinstance(answer.get("body", {}), dict):
            return self._response(message, False, text="debugger: the board's answer is not a DAP response")
        return self._response(
            message, answer.get("success") is True, answer.get("body"), str(answer.get("message", ""))[:500]
        )

    async def _initialize(self, message: dict) -> dict:
        if not self.available:
            return self._response(
                message, False, text="this board cannot debug (its Python has no sys.settrace)"
            )
        self.started = True
        return self._response(message, body=dict(CAPABILITIES))

    async def _attach(self, message: dict) -> dict:
        reply = await self._forward(message, "start", {})
        if reply["success"]:
            self._boot_id = self.board_boot_id()
            self.publish(self.event({"type": "event", "event": "initialized", "body": {}}))
        return reply

    async def _configurationDone(self, message: dict) -> dict:
        return self._response(message)

    async def _disconnect(self, message: dict) -> dict:
        reply = await self._forward(message, "stop", {})
        self.started = False
        self.breakpoints = {}
        self._requested = {}
        self._filters = []
        self._boot_id = None
        self.stopped_threads = set()
        reply["success"] = True  # the kernel's end is reset even if the board is gone
        return reply

    async def _debugInfo(self, message: dict) -> dict:
        body = {
            "isStarted": self.started,
            "hashMethod": "Murmur2",
            "hashSeed": get_tmp_hash_seed(),
            "tmpFilePrefix": self.prefix,
            "tmpFileSuffix": ".py",
            "breakpoints": [
                {"source": path, "breakpoints": points} for path, points in self.breakpoints.items()
            ],
            "stoppedThreads": sorted(self.stopped_threads),
            "richRendering": True,
            "exceptionPaths": ["Python Exceptions"],
            "copyToGlobals": True,
        }
        return self._response(message, body=body)

    async def _dumpCell(self, message: dict) -> dict:
        code = (message.get("arguments") or {}).get("code", "")
        path = self.cell_file(code)
        await self._board("dumpCell", {"path": path, "code": code})  # the board shows its lines in stacks
        return self._response(message, body={"sourcePath": path})

    async def _setBreakpoints(self, message: dict) -> dict:
        reply = await self._forward(message)
        if reply["success"]:
            path = message["arguments"]["source"]["path"]
            self._requested[path] = message["arguments"].get("breakpoints") or []
            points = [
                {"line": point["line"]}
                for point in reply["body"].get("breakpoints") or []
                if isinstance(point, dict) and isinstance(point.get("line"), int)
            ]
            if points:
                self.breakpoints[path] = points
            else:
                self.breakpoints.pop(path, None)
        return reply

    async def _setExceptionBreakpoints(self, message: dict) -> dict:
        self._filters = list((message.get("arguments") or {}).get("filters") or [])
        return await self._forward(message)

    async def _modules(self, message: dict) -> dict:
        return self._response(message, body={"modules": [], "totalModules": 0})

    async def _richInspectVariables(self, message: dict) -> dict:
        name = (message.get("arguments") or {}).get("variableName", "")
        if not name.isidentifier():  # as ipykernel: only names; its two group rows are not errors
            ok = name in ("special variables", "function variables")
            return self._response(message, ok, {"data": {}, "metadata": {}})
        reply = await self._forward(message)
        if reply["success"]:
            try:
                data, metadata = self.check_bundle(reply["body"].get("data"), reply["body"].get("metadata"))
            except ValueError as exc:  # outputs.BadOutput
                return self._response(
                    message, False, text=f"debugger: the board's value cannot be shown ({exc})"
                )
            reply["body"] = {"data": data, "metadata": metadata}
        return reply

    async def _copyToGlobals(self, message: dict) -> dict:
        arguments = message.get("arguments") or {}
        names = (arguments.get("dstVariableName", ""), arguments.get("srcVariableName", ""))
        if not all(name.isidentifier() for name in names):
            return self._response(
                message, False, text="dstVariableName and srcVariableName must be valid identifiers"
            )
        return await self._forward(message)
