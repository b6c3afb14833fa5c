"""`# exec(...)` parsing: which comment lines are local commands, and what runs."""

from __future__ import annotations

import pytest

from rpyc_ikernel.commands import compile_command, find_commands, has_board_code


def sources(code: str) -> list[str]:
    return [command.source for command in find_commands(code)]


@pytest.mark.parametrize(
    "code, expected",
    [
        ('# exec(self.connect_remote("127.0.0.1"))', ['self.connect_remote("127.0.0.1")']),
        ('#exec(print("hi"))', ['print("hi")']),
        ('#    exec(print("hi"))', ['print("hi")']),
        ("    # exec(x())", ["x()"]),
        ("a = 1\n# exec(one())\nb = 2\n# exec(two())\n", ["one()", "two()"]),
        ('# exec(self.display("img", interval=0.05))  # a note', ['self.display("img", interval=0.05)']),
        ("# exec(f(')'))", ["f(')')"]),
        ("# exec()", [""]),
        ("# exec (print(1))", ["print(1)"]),
    ],
)
def test_finds_commands(code, expected):
    assert sources(code) == expected


@pytest.mark.parametrize(
    "code",
    [
        's = """\n# exec(print(1))\n"""',  # inside a triple-quoted string: board code
        "s = '# exec(print(1))'",
        "x = 1  # exec(print(1))",  # a trailing comment is just a comment
        "# execute(print(1))",
        "# not exec(print(1))",
        "# exec print(1)",
    ],
)
def test_ignores_non_commands(code):
    assert sources(code) == []


def test_line_numbers_and_comment_text():
    commands = find_commands("x = 1\n\n  # exec(go())\n")
    assert [(c.line, c.comment) for c in commands] == [(3, "# exec(go())")]


def test_commands_before_a_tokenize_error_are_kept():
    # An unterminated string later in the cell does not hide the commands above it.
    assert sources("# exec(first())\nx = '''unterminated") == ["first()"]


def test_expressions_and_statements_compile():
    expression = find_commands("# exec(1 + 1)")[0]
    statement = find_commands("# exec(y = 5)")[0]
    code, is_expression = compile_command(expression)
    assert is_expression and eval(code) == 2
    namespace = {}
    code, is_expression = compile_command(statement)
    assert not is_expression
    exec(code, namespace)
    assert namespace["y"] == 5


def test_syntax_error_in_command_is_reported():
    command = find_commands("# exec(print(()")[0]
    with pytest.raises(SyntaxError):
        compile_command(command)


@pytest.mark.parametrize(
    "code, expected",
    [
        ("", False),
        ("   \n\n", False),
        ("# only a comment\n# exec(x())", False),
        ("x = 1", True),
        ("def f(:", True),  # the board reports the syntax error
        ("# comment\npass", True),
    ],
)
def test_has_board_code(code, expected):
    assert has_board_code(code) is expected
