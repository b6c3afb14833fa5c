"""The base of a group of the board's magics, as IPython's `Magics` class is.

A group's `line_NAME` / `cell_NAME` methods are the magics; the group keeps the state its magics
share (%cd's previous directory), and reaches the shell (var_expand, set_next_input) and the
session (namespace, history, the running cell) through its attributes.
"""


class Magics(object):
    """One group of magics of a BoardShell."""

    def __init__(self, shell):
        self.shell = shell
        self.session = shell.session

    @property
    def user_ns(self):
        return self.session.namespace
