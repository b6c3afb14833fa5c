"""IPython syntax in board cells: `!cmd`, `x = !cmd`, `%magic`, `%%magic`, `obj?`.

The kernel rewrites such lines with IPython's own input transformer (the one IPython uses), so
`!ls` becomes ``get_ipython().system('ls')`` and `%time f()` becomes
``get_ipython().run_line_magic('time', 'f()')``. Those calls reach the agent's ``BoardShell`` on the
board, so shell commands and magics run there, against the board's namespace. The board needs no
IPython for this; the kernel already has it.

Plain Python is sent unchanged, so tracebacks show exactly what the user wrote.
"""

from __future__ import annotations

import ast
import warnings

from IPython.core.inputtransformer2 import TransformerManager

_transformer = TransformerManager()


def is_plain_python(code: str) -> bool:
    """True when the cell parses as Python as it stands (then it needs no rewriting)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. SyntaxWarning for "\d" in strings: the board's say
            ast.parse(code)
    except (SyntaxError, ValueError):
        return False
    return True


def to_board_code(code: str) -> str:
    """The cell as Python the board can run: IPython syntax rewritten, line numbers kept.

    IPython drops leading blank lines; they are put back so an error on line 5 of the cell is still
    reported as line 5. Code that is not valid either way is sent unchanged: the board's SyntaxError
    then points at what the user typed.
    """
    if is_plain_python(code):
        return code
    try:
        transformed = _transformer.transform_cell(code)
    except Exception:
        return code
    if transformed.strip() == code.strip():
        return code
    dropped = len(code) - len(code.lstrip("\n\r \t"))
    leading_lines = code[:dropped].count("\n")
    return "\n" * leading_lines + transformed
