"""What the kernel and the agent say to each other: one vocabulary, imported by both sides.

The kernel imports it as ``rpyc_ikernel.agent.wire``; on the board it is a module of the agent
package. Standard library only, Python 3.7+, no side effects.

Output events travel in the shape of Jupyter's iopub messages, ``{"msg_type": ..., "content": ...}``,
so the kernel publishes them as they are. A cell's ``run``/``poll`` answer (JSON) is::

    {"events": [event, ...], "done": bool, "seq": int, "running": bool,
     "reply": {"status": "ok"|"error", ..., "result": {"data", "metadata"}}  # when done
     "input": {"prompt": str, "password": bool}                             # when input() waits
     "busy": true}                                                          # another cell runs
"""

PACKAGE = "_rpyc_ikernel_agent"  # the agent's name in the board process's sys.modules
STATE_MODULE = "_rpyc_ikernel_state"  # survives agent upgrades: output routing, saved builtins
EXECUTOR_MODULE = "_rpyc_ikernel_executor"  # registered by our server: runs cells on the main thread
MPL_BACKEND_MODULE = "_rpyc_ikernel_mpl"  # the inline matplotlib backend board code gets

# The methods of a board session the kernel calls, in the order connect() returns them.
SESSION_METHODS = ("run", "poll", "interrupt", "provide_input", "complete", "inspect", "evaluate", "debug")

# What the kernel reaches through the agent package, and the module that provides it (loaded on first use).
ENTRY_POINTS = {
    "connect": "session",
    "attach": "session",
    "board_info": "session",
    "ping": "session",
    "SESSIONS": "session",
    "board_status": "sysinfo",
    "open_upload": "transfer",
    "write_chunk": "transfer",
    "finish_upload": "transfer",
    "open_download": "transfer",
    "read_chunk": "transfer",
    "finish_download": "transfer",
    "abort_transfer": "transfer",
    "tune_link": "transfer",
    "read_images": "liveimage",
    "read_image": "liveimage",
    "sniff_image_format": "liveimage",
    "prepare_image_connection": "liveimage",
}

# Live images: read_images answers (digest, kind, payload) per variable; kind is one of these or an
# image format: a key of IMAGE_MIME (sent as is), "bmp" or "unknown" (for the kernel to transcode).
IMAGE_SAME = "same"  # the kernel already shows this frame; payload b""
IMAGE_MESSAGE = "message"  # no frame; payload is one line saying why
IMAGE_MIME = {"jpeg": "image/jpeg", "png": "image/png", "gif": "image/gif"}

# Files: what a transfer reads at most of a file that reports size 0 (/proc, /sys), at either end.
PSEUDO_FILE_LIMIT = 1024 * 1024  # bytes

STREAM = "stream"
DISPLAY_DATA = "display_data"
UPDATE_DISPLAY_DATA = "update_display_data"
CLEAR_OUTPUT = "clear_output"


def stream_event(name, text):
    """Text written to stdout or stderr."""
    return {"msg_type": STREAM, "content": {"name": name, "text": text}}


def display_event(data, metadata, transient, update=False):
    """A mime bundle shown in the cell, or (update) replacing the display of transient's display_id."""
    content = {"data": data, "metadata": metadata, "transient": transient}
    return {"msg_type": UPDATE_DISPLAY_DATA if update else DISPLAY_DATA, "content": content}


def clear_output_event(wait):
    return {"msg_type": CLEAR_OUTPUT, "content": {"wait": bool(wait)}}
