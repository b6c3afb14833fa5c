"""Finds the local commands of a cell: comment lines of the form ``# exec(<python>)``.

They are comments so that the cell stays valid Python on the board. tokenize tells a real comment from
the same characters inside a string literal, so ``s = '''\\n# exec(x)\\n'''`` stays board code.
"""

from __future__ import annotations

import ast
import io
import re
import tokenize
from dataclasses import dataclass

_COMMAND = re.compile(r"#\s*exec\s*\((?P<rest>.*)$", re.DOTALL)


@dataclass(frozen=True)
class LocalCommand:
    """The Python inside one ``# exec(...)`` line, and where it stood."""

    line: int  # 1-based line number in the cell
    source: str  # the text between exec( and its closing parenthesis
    comment: str  # the whole comment, for messages


def _comment_tokens(code: str):
    """(line, column, text, physical line) of every comment token; stops quietly at a tokenize error."""
    readline = io.StringIO(code).readline
    try:
        for token in tokenize.generate_tokens(readline):
            if token.type == tokenize.COMMENT:
                yield token.start[0], token.start[1], token.string, token.line
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return


def _inner_source(rest: str) -> str | None:
    """The argument text of exec(...): up to the closing parenthesis that leaves valid Python."""
    for end in range(len(rest) - 1, -1, -1):
        if rest[end] != ")":
            continue
        inner = rest[:end].strip()
        try:
            ast.parse(inner or "None", mode="exec")
        except SyntaxError:
            continue
        return inner
    return None


def find_commands(code: str) -> list[LocalCommand]:
    """Every ``# exec(...)`` comment that stands alone on its line, in order."""
    commands = []
    for line_no, column, text, physical in _comment_tokens(code):
        if physical[:column].strip():
            continue  # a trailing comment after code is just a comment
        match = _COMMAND.match(text)
        if match is None:
            continue
        inner = _inner_source(match.group("rest"))
        if inner is None:
            inner = match.group("rest")  # let compiling it report the syntax error
        commands.append(LocalCommand(line=line_no, source=inner, comment=text))
    return commands


def has_board_code(code: str) -> bool:
    """False when the cell holds nothing but comments and blank lines (nothing to send)."""
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return True  # the board reports the error, against its own Python version
    return bool(tree.body)


def compile_command(command: LocalCommand):
    """Compile a command as an expression when it is one (so its value can be shown), else statements."""
    filename = f"<# exec line {command.line}>"
    try:
        return compile(command.source, filename, "eval"), True
    except SyntaxError:
        return compile(command.source, filename, "exec"), False


# keyword arguments of local commands whose values are secrets (token=, a pairing string...)
_SECRET_ARGUMENT = re.compile(
    r"""(?P<name>\b\w*(?:token|password|passphrase|secret|pairing)\w*\s*=\s*)"""
    r"""(?P<prefix>[rRbBuUfF]{0,2})(?P<quote>'''|\"\"\"|'|")(?P<value>.*?)(?<!\\)(?P=quote)""",
    re.IGNORECASE | re.DOTALL,
)
HIDDEN = "<hidden>"


def without_secrets(code: str) -> str:
    """The cell as it may be stored in history: string values of token=-like keyword arguments in its
    ``# exec(...)`` lines replaced by <hidden> (IPython's history database is readable by others:
    0644). Board code is left as typed."""
    lines = code.splitlines(keepends=True)
    for command in find_commands(code):
        index = command.line - 1
        if 0 <= index < len(lines) and _SECRET_ARGUMENT.search(lines[index]):
            lines[index] = _SECRET_ARGUMENT.sub(
                lambda m: f"{m['name']}{m['prefix']}{m['quote']}{HIDDEN}{m['quote']}", lines[index]
            )
    return "".join(lines)
