"""formatters.py takes printers for classes by name (as IPython's for_type_by_name), so inline.py can
add matplotlib figures without formatters.py importing it, or matplotlib."""

from __future__ import annotations

import sys

from rpyc_ikernel.agent import formatters


class Drawing:
    """Stands in for a class of a library the board may not have."""

    def _repr_html_(self):
        return "<b>not this</b>"


class Sketch(Drawing):
    pass


def test_a_printer_registered_by_name_formats_the_class_and_its_subclasses(monkeypatch):
    monkeypatch.setattr(formatters, "_BY_NAME", {})
    assert formatters.format_bundle(Sketch())[0]["text/html"] == "<b>not this</b>"

    def printer(obj):
        return {"image/png": b"\x89PNG"}, {"image/png": {"width": 2}}

    formatters.for_type_by_name(__name__, "Drawing", printer)
    data, metadata = formatters.format_bundle(Sketch())
    assert data["image/png"] == "iVBORw=="  # bytes sent base64, as a _repr_png_'s
    assert "text/html" not in data  # the printer's bundle replaces the _repr_*_ methods
    assert data["text/plain"].startswith("<test_agent_formatters.Sketch object")
    assert metadata == {"image/png": {"width": 2}}
    assert formatters.format_bundle(3)[0] == {"text/plain": "3"}


def test_registering_by_name_imports_nothing(monkeypatch):
    monkeypatch.setattr(formatters, "_BY_NAME", {})
    formatters.for_type_by_name("no_such_module_here", "Figure", lambda obj: ({}, {}))
    assert "no_such_module_here" not in sys.modules
    assert formatters.format_bundle([1])[0] == {"text/plain": "[1]"}
