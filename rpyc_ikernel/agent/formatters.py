"""Mime bundles for values, like IPython's display formatter: text/plain plus what _repr_*_ gives."""

MIME_METHODS = (
    ("text/html", "_repr_html_"),
    ("text/markdown", "_repr_markdown_"),
    ("image/svg+xml", "_repr_svg_"),
    ("image/png", "_repr_png_"),
    ("image/jpeg", "_repr_jpeg_"),
    ("text/latex", "_repr_latex_"),
    ("application/json", "_repr_json_"),
    ("application/javascript", "_repr_javascript_"),
    ("application/pdf", "_repr_pdf_"),
)


def plain_text(obj):
    """repr(obj); long containers pretty-printed over several lines."""
    text = repr(obj)
    if len(text) > 79 and isinstance(obj, (dict, list, tuple, set, frozenset)):
        import pprint

        try:
            text = pprint.pformat(obj, width=79, sort_dicts=False)
        except TypeError:  # Python 3.7 has no sort_dicts
            text = pprint.pformat(obj, width=79)
    return text


def _encode(mime, value):
    if isinstance(value, (bytes, bytearray, memoryview)):
        import binascii

        return binascii.b2a_base64(bytes(value), newline=False).decode("ascii")
    if mime == "application/json" or isinstance(value, str):
        return value
    return str(value)


_BY_NAME = {}  # (module, class name) -> printer(obj) -> (data, metadata), see for_type_by_name


def for_type_by_name(type_module, type_name, printer):
    """Format instances of the class `type_module.type_name` (or of its subclasses) with printer.

    As IPython's ``for_type_by_name``: the class is named, not imported, so registering costs nothing
    on a board without it. printer(obj) returns (data, metadata), with bytes for binary data. This
    is how a module above this one (inline.py: matplotlib figures) adds a format without this one
    importing it.
    """
    _BY_NAME[(type_module, type_name)] = printer


def _printer_for(obj):
    if not _BY_NAME:
        return None
    try:
        classes = type(obj).__mro__
    except Exception:
        return None
    for cls in classes:
        printer = _BY_NAME.get((getattr(cls, "__module__", None), getattr(cls, "__name__", None)))
        if printer is not None:
            return printer
    return None


def format_bundle(obj):
    """A Jupyter mime bundle (data, metadata) for obj, like IPython's display formatter."""
    data = {}
    metadata = {}
    printer = _printer_for(obj)
    if printer is not None:
        produced, extra = printer(obj)
        for mime, value in produced.items():
            data[mime] = _encode(mime, value)
        metadata.update(extra)
    elif not isinstance(obj, type):
        _add_mimebundle(obj, data, metadata)
        for mime, name in MIME_METHODS:
            if mime not in data:
                _add_repr(obj, name, mime, data, metadata)
    if "text/plain" not in data:
        data["text/plain"] = plain_text(obj)
    return data, metadata


def _add_mimebundle(obj, data, metadata):
    method = _repr_method(obj, "_repr_mimebundle_")
    if method is None:
        return
    try:
        produced = method(include=None, exclude=None)
    except Exception:
        return
    if isinstance(produced, tuple) and len(produced) == 2:
        produced, extra = produced
        metadata.update(extra or {})
    if isinstance(produced, dict):
        for mime, value in produced.items():
            data[mime] = _encode(mime, value)


def _add_repr(obj, name, mime, data, metadata):
    method = _repr_method(obj, name)
    if method is None:
        return
    try:
        value = method()
    except Exception:
        return
    if isinstance(value, tuple) and len(value) == 2:
        value, extra = value
        if extra:
            metadata[mime] = extra
    if value is not None:
        data[mime] = _encode(mime, value)


def _repr_method(obj, name):
    try:
        method = getattr(obj, name, None)
    except Exception:
        return None
    return method if callable(method) else None
