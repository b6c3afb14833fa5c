"""Errors as a notebook user sees them: IPython's UsageError, and tracebacks with only the user's frames.

Shared by the session (a cell's error), the magics (UsageError) and the debugger (which frames are
ours). Imports nothing of the agent but wire.py's names.
"""

import os
import sys
import traceback

from . import wire

AGENT_FILES = os.path.dirname(__file__)  # tracebacks leave out frames of files in here


class UsageError(Exception):
    """A magic used wrongly or not available on the board: shown as one line, like IPython's."""


UsageError.__module__ = "builtins"  # tracebacks say "UsageError: ..."


def format_error(exc_type, exc, tb):
    """ename/evalue/traceback with only the user's frames, like IPython shows a cell's error."""
    if isinstance(exc, UsageError):
        lines = ["UsageError: %s" % exc]
    else:
        report = traceback.TracebackException(exc_type, exc, tb)
        _keep_user_frames(report, exc, tb)
        lines = list(report.format())
    return {
        "status": "error",
        "ename": exc_type.__name__,
        "evalue": str(exc),
        "traceback": [line.rstrip("\n") for line in lines],
    }


def _keep_user_frames(report, exc, tb):
    """Remove the agent's and the server's frames from a TracebackException and its chained ones.

    Hidden are frames of the agent's files, of our server's file (its interrupt signal handler
    raises KeyboardInterrupt on top of the user's frame), and frames whose function sets
    ``__tracebackhide__ = True`` (IPython's and pytest's convention).
    """
    hidden_files = _hidden_files()
    pending = [(report, exc, tb)]
    seen = set()
    while pending:
        item, error, error_tb = pending.pop()
        if item is None or id(item) in seen:
            continue
        seen.add(id(item))
        frames = [frame for frame, _ in traceback.walk_tb(error_tb)]
        if len(frames) == len(item.stack):  # one summary per frame, in order: the frames can be asked
            kept = [s for s, f in zip(item.stack, frames) if not _hidden_frame(f, hidden_files)]
        else:
            kept = [s for s in item.stack if not _hidden_file(s.filename, hidden_files)]
        item.stack = traceback.StackSummary.from_list(kept)
        for chained in ("__cause__", "__context__"):
            inner = getattr(error, chained, None)
            pending.append((getattr(item, chained), inner, getattr(inner, "__traceback__", None)))


def _hidden_files():
    """The files of our own code running in this process: the agent's directory and our server."""
    files = set()
    executor = sys.modules.get(wire.EXECUTOR_MODULE)
    submit = getattr(executor, "submit", None)
    code = getattr(getattr(submit, "__func__", submit), "__code__", None)
    if code is not None:
        files.add(code.co_filename)
    return files


def _hidden_file(filename, hidden_files):
    return filename.startswith(AGENT_FILES + "/") or filename in hidden_files


def _hidden_frame(frame, hidden_files):
    code = frame.f_code
    if _hidden_file(code.co_filename, hidden_files):
        return True
    return "__tracebackhide__" in code.co_varnames and bool(frame.f_locals.get("__tracebackhide__"))
