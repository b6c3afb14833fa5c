"""display(), update_display(), clear_output() for board code, and IPython.display's stand-ins.

The output goes to the running cell (or, from another thread, to the last cell that ran) as Jupyter
display_data / update_display_data / clear_output messages. HTML, Markdown, Image, ... stand in
for IPython.display's classes on a board without IPython (see shim.py).
"""

import json
import os

from . import wire
from .formatters import format_bundle
from .iostream import output_session


def _new_id():
    return os.urandom(16).hex()


class DisplayHandle(object):
    """What display(..., display_id=...) returns: lets board code update that output in place."""

    def __init__(self, display_id=None):
        self.display_id = display_id or _new_id()

    def display(self, obj, **kwargs):
        display(obj, display_id=self.display_id, **kwargs)

    def update(self, obj, **kwargs):
        display(obj, display_id=self.display_id, update=True, **kwargs)

    def __repr__(self):
        return "<DisplayHandle display_id=%s>" % self.display_id


def display(*objs, display_id=None, update=False, raw=False, metadata=None, clear=False, **kwargs):
    """Show objects in the running cell's output, like IPython.display.display."""
    session = output_session()
    if display_id is True:
        display_id = _new_id()
    if clear:
        clear_output(wait=True)
    for obj in objs:
        if raw:
            data, meta = dict(obj), {}
        else:
            data, meta = format_bundle(obj)
        if metadata:
            meta.update(metadata)
        transient = {"display_id": display_id} if display_id else {}
        if session is None:
            print(data.get("text/plain", ""))
        else:
            session.emit(wire.display_event(data, meta, transient, update=update))
    if display_id and not update:
        return DisplayHandle(display_id)
    return None


def update_display(obj, display_id, **kwargs):
    """Replace the output shown under display_id."""
    display(obj, display_id=display_id, update=True, **kwargs)


def clear_output(wait=False):
    """Clear the cell's output; wait=True clears when the next output arrives (no flicker)."""
    session = output_session()
    if session is not None:
        session.emit(wire.clear_output_event(wait))


# --------------------------------------------------------------------------- IPython.display, on the board


class _DisplayObject(object):
    """Base of HTML, Markdown, ...: data given directly or read from a file, shown as one mime type."""

    binary = False

    def __init__(self, data=None, url=None, filename=None, metadata=None):
        if filename is None and isinstance(data, str) and _looks_like_path(data):
            filename, data = data, None
        if filename is not None:
            with open(filename, "rb" if self.binary else "r") as handle:
                data = handle.read()
        self.data = data
        self.url = url
        self.metadata = metadata

    def _data(self):
        return self.data

    def __repr__(self):
        return "<IPython.core.display.%s object>" % type(self).__name__


def _looks_like_path(text):
    return len(text) < 4096 and "\n" not in text and os.path.isfile(os.path.expanduser(text))


class HTML(_DisplayObject):
    _repr_html_ = _DisplayObject._data


class Markdown(_DisplayObject):
    _repr_markdown_ = _DisplayObject._data


class Latex(_DisplayObject):
    _repr_latex_ = _DisplayObject._data


class SVG(_DisplayObject):
    _repr_svg_ = _DisplayObject._data


class Javascript(_DisplayObject):
    _repr_javascript_ = _DisplayObject._data


class JSON(_DisplayObject):
    def __init__(self, data=None, url=None, filename=None, metadata=None, **kwargs):
        _DisplayObject.__init__(self, data, url, filename, metadata)
        if isinstance(self.data, str) and filename is not None:
            self.data = json.loads(self.data)

    _repr_json_ = _DisplayObject._data


class Image(_DisplayObject):
    """PNG, JPEG or GIF bytes (or a file) shown as an image; a url alone shows as <img>."""

    binary = True

    def __init__(self, data=None, url=None, filename=None, format=None, width=None, height=None, **kwargs):
        if url is not None and data is None and filename is None:
            _DisplayObject.__init__(self, None, url=url)
        else:
            _DisplayObject.__init__(self, data, filename=filename)
        self.format = format
        self.width = width
        self.height = height

    def _mime(self):
        data = self.data or b""
        if self.format:
            return "image/" + {"jpg": "jpeg"}.get(self.format.lower(), self.format.lower())
        if data[:4] == b"\x89PNG":
            return "image/png"
        if data[:3] == b"GIF":
            return "image/gif"
        return "image/jpeg"

    def _repr_mimebundle_(self, include=None, exclude=None):
        size = {}
        if self.width:
            size["width"] = self.width
        if self.height:
            size["height"] = self.height
        if self.data is None:
            extra = "".join(' %s="%s"' % item for item in sorted(size.items()))
            return {"text/html": '<img src="%s"%s/>' % (self.url, extra)}
        mime = self._mime()
        return {mime: bytes(self.data)}, ({mime: size} if size else {})


SHIM_NAMES = (
    "display",
    "update_display",
    "clear_output",
    "DisplayHandle",
    "HTML",
    "Markdown",
    "Latex",
    "SVG",
    "Javascript",
    "JSON",
    "Image",
)


def fill_display_shim(module):
    """The stand-in `IPython.display` module board code imports when the board has no IPython."""
    for name in SHIM_NAMES:
        setattr(module, name, globals()[name])
