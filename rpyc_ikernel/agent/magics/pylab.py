"""Figures on the board: %matplotlib inline and %config InlineBackend.figure_format."""

import ast
import re

from ..errors import UsageError
from .base import Magics


class PylabMagics(Magics):
    def line_matplotlib(self, line):
        """'%matplotlib inline' (the default here): figures show in the notebook as PNG."""
        gui = line.strip() or "inline"
        if gui not in ("inline",):
            raise UsageError(
                "%%matplotlib %s: only 'inline' works on the board (figures are drawn there and shown"
                " in the notebook as PNG)" % gui
            )
        from ..inline import use_inline_backend

        use_inline_backend()

    def line_config(self, line):
        """Only '%config InlineBackend.figure_format = "png" | "retina"' means something here."""
        match = re.match(r"^\s*InlineBackend\.figure_formats?\s*=\s*(.+)$", line)
        value = None
        if match:
            try:
                value = ast.literal_eval(match.group(1).strip())
            except (ValueError, SyntaxError):
                value = None
        if isinstance(value, str):
            formats = {value}
        elif isinstance(value, (list, tuple, set)):
            formats = set(value)
        else:
            formats = set()
        if not formats or not formats <= {"png", "retina"}:
            raise UsageError(
                "%config on the board only knows InlineBackend.figure_format = 'png' or 'retina'"
            )
        self.session.figure_format = "retina" if "retina" in formats else "png"
