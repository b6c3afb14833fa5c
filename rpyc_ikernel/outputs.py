"""What a board may show in the notebook: the output messages of a cell, checked, and nothing that
runs in the browser unless the user trusts the board.

The kernel publishes what a cell on the board produces. A board that lies could otherwise publish
any message type (``status: idle`` ends a cell early for the client; ``comm_open`` drives widgets)
and, worse, script: JavaScript shown live in JupyterLab runs in the Jupyter server's origin, which
can open a terminal and run code on this machine. So a board's output is taken apart and rebuilt
from checked fields, and by default what would run in the browser is left out:

- ``application/javascript`` (and other script types) is dropped;
- HTML, SVG and Markdown are kept unless they carry active content (script elements, event handler
  attributes, ``javascript:`` URLs, frames, objects, forms, ``<base>``/``<meta>``/``<link>``);
- data for renderer extensions (``application/vnd.plotly.v1+json``, Vega, GeoJSON) is kept: the
  extension's own code draws it, so plotly figures still show in JupyterLab.

This matches Jupyter's own rule for output it did not produce in this session (an untrusted
notebook's HTML is sanitized and its JavaScript is not run), applied to a board's output. For a
board the user trusts as much as the laptop, ``RPYC_IKERNEL_TRUST_BOARD_HTML=1`` (environment or
kernelspec) or ``connect_remote(..., trusted=True)`` publishes rich output as it comes.
"""

from __future__ import annotations

import html
import re

from . import settings

# The message types a cell produces; anything else a board names is dropped.
CELL_OUTPUT_TYPES = ("stream", "display_data", "update_display_data", "clear_output")
SCRIPT_TYPES = frozenset(
    {
        "application/javascript",
        "text/javascript",
        "application/x-javascript",
        "application/ecmascript",
        "text/ecmascript",
    }
)
MARKUP_TYPES = frozenset({"text/html", "image/svg+xml", "text/markdown", "application/xhtml+xml"})
_ACTIVE_TAG = re.compile(
    r"<\s*/?\s*(script|iframe|frame|frameset|object|embed|applet|base|meta|link|form|portal)\b", re.I
)
_HANDLER = re.compile(r"<[^>]*[\s/\"'](on[a-z]+|formaction|srcdoc)\s*=", re.I | re.S)
_URL_SCHEME = re.compile(
    r"(javascript|vbscript|livescript):|data:(text/html|image/svg|application/xhtml)", re.I
)
_INVISIBLE = re.compile(r"[\x00-\x20\x7f]+")
NOT_SHOWN = (
    "[board output with script not shown: set RPYC_IKERNEL_TRUST_BOARD_HTML=1 or"
    " connect_remote(..., trusted=True) for a board you trust]"
)


class BadOutput(ValueError):
    """A board's output message that is not a cell's output, or whose content is malformed."""


def trusted_from_environment(environ: dict | None = None) -> bool:
    """RPYC_IKERNEL_TRUST_BOARD_HTML (on/off, default off): whether to trust the board's rich output."""
    return settings.TRUST_BOARD_HTML.read(environ)


def is_active(text: str) -> bool:
    """True if markup could run script in the browser (a denylist, so it errs on the side of True)."""
    if _ACTIVE_TAG.search(text) or _HANDLER.search(text):
        return True
    flat = _INVISIBLE.sub("", html.unescape(text))  # "jav&#x61;\tscript:" is javascript: to a browser
    return bool(_URL_SCHEME.search(flat))


def check_bundle(data: object, metadata: object, trusted: bool) -> tuple[dict, dict]:
    """A mime bundle and its metadata, checked; script and active markup left out unless trusted."""
    if not isinstance(data, dict) or not isinstance(metadata if metadata is not None else {}, dict):
        raise BadOutput("a display's data or metadata is not a mapping")
    kept, dropped = {}, []
    for mime, value in data.items():
        json_scalar = (
            isinstance(mime, str)
            and mime.endswith("json")
            and isinstance(value, (int, float, bool, type(None)))
        )
        if not isinstance(mime, str) or not (isinstance(value, (str, dict, list)) or json_scalar):
            raise BadOutput(f"a display's {str(mime)[:40]!r} value is not text or JSON")
        if not trusted and (mime.lower() in SCRIPT_TYPES or "javascript" in mime.lower()):
            dropped.append(mime)
            continue
        if not trusted and mime.lower() in MARKUP_TYPES and isinstance(value, str) and is_active(value):
            dropped.append(mime)
            continue
        kept[mime] = value
    if dropped and "text/plain" not in kept:
        kept["text/plain"] = NOT_SHOWN
    meta = {key: value for key, value in (metadata or {}).items() if key not in dropped}
    return kept, meta


def check_event(event: object, trusted: bool) -> tuple[str, dict]:
    """(msg_type, content) to publish for one output event of the board; BadOutput if it is not one."""
    if not isinstance(event, dict) or not isinstance(event.get("content"), dict):
        raise BadOutput("an output event is not a message")
    msg_type, content = event.get("msg_type"), event["content"]
    if msg_type == "stream":
        name, text = content.get("name"), content.get("text")
        if name not in ("stdout", "stderr") or not isinstance(text, str):
            raise BadOutput("a stream event names no stream or has no text")
        return msg_type, {"name": name, "text": text}
    if msg_type in ("display_data", "update_display_data"):
        data, metadata = check_bundle(content.get("data"), content.get("metadata"), trusted)
        transient = content.get("transient") or {}
        display_id = transient.get("display_id") if isinstance(transient, dict) else None
        if display_id is not None and not isinstance(display_id, str):
            raise BadOutput("a display id is not text")
        if msg_type == "update_display_data" and display_id is None:
            raise BadOutput("a display update names no display")
        checked = {"data": data, "metadata": metadata, "transient": {}}
        if display_id is not None:
            checked["transient"]["display_id"] = display_id
        return msg_type, checked
    if msg_type == "clear_output":
        return msg_type, {"wait": bool(content.get("wait"))}
    raise BadOutput(f"the board sent a message of type {str(msg_type)[:40]!r}, which is not cell output")


def check_error(reply: object) -> tuple[str, str, list]:
    """ename, evalue, traceback of a cell's error reply, checked."""
    if not isinstance(reply, dict):
        raise BadOutput("an error reply is not a mapping")
    ename, evalue, traceback = reply.get("ename"), reply.get("evalue"), reply.get("traceback")
    if not isinstance(ename, str) or not isinstance(evalue, str) or not isinstance(traceback, list):
        raise BadOutput("an error reply lacks its name, value or traceback")
    if not all(isinstance(line, str) for line in traceback):
        raise BadOutput("an error reply's traceback is not text")
    return ename, evalue, traceback
