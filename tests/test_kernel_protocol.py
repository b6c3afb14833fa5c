"""The Jupyter messaging protocol, checked by jupyter_kernel_test against a real kernel and board."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import jupyter_kernel_test
from helpers import install_kernelspec, start_board


class RPycKernelProtocolTests(jupyter_kernel_test.KernelTests):
    kernel_name = "rpyc"
    language_name = "python"
    file_extension = ".py"

    code_hello_world = "print('hello, world')"
    code_stderr = "import sys; print('oops', file=sys.stderr)"
    code_page_something = "len?"
    code_generate_error = "raise ValueError('board says no')"
    code_execute_result = [
        {"code": "1 + 2", "result": "3"},
        {"code": "'board'.upper()", "result": "'BOARD'"},
        {"code": "import sys; sys.version_info[0]", "result": "3"},
        {
            "code": "class H:\n    def _repr_html_(self):\n        return '<b>hi</b>'\nH()",
            "mime": "text/html",
        },
    ]
    code_display_data = [
        {"code": "display(42)", "mime": "text/plain"},
        {
            "code": "class Md:\n    def _repr_markdown_(self):\n        return '*md*'\ndisplay(Md())",
            "mime": "text/markdown",
        },
    ]
    code_clear_output = "clear_output()"
    code_history_pattern = "1 + 2"
    # "range" is left out as for stock ipykernel: IPython answers the current session as session 0,
    # which jupyter_kernel_test 0.7 does not expect (stock ipykernel fails that check the same way).
    supported_history_operations = ("tail", "search")
    code_inspect_sample = "print(len"  # Shift-Tab inside a call inspects the function
    completion_samples = [
        {"text": "str.upp", "matches": {"str.upper"}},
        {"text": "zi", "matches": {"zip"}},
        {"text": "dict.fromk", "matches": {"dict.fromkeys"}},
        {"text": "print(str.spl", "matches": {"str.split", "str.splitlines"}},
        {"text": "clear_out", "matches": {"clear_output"}},  # injected into the board's namespace
        {"text": "%timei", "matches": {"%timeit", "%%timeit"}},  # as IPython: line and cell magic
        {"text": "%%wri", "matches": {"%%writefile"}},
    ]
    complete_code_samples = [
        "1",
        "print('hello, world')",
        "def f(x):\n  return x*2\n\n\n",
        "!ls",
        "%time 1",
        "files = !ls",
    ]
    incomplete_code_samples = ["print('''hello", "def f(x):\n  x*2", "for i in range(3):", "%%bash\necho hi"]
    invalid_code_samples = ["import = 7q", "1 +* 2"]

    @classmethod
    def setUpClass(cls) -> None:
        cls._prefix = tempfile.TemporaryDirectory()
        install_kernelspec(Path(cls._prefix.name))
        cls._board = start_board()
        cls._saved_env = {name: os.environ.get(name) for name in ("RPYC_IKERNEL_HOST", "RPYC_IKERNEL_PORT")}
        os.environ["RPYC_IKERNEL_HOST"] = "127.0.0.1"
        os.environ["RPYC_IKERNEL_PORT"] = str(cls._board.port)
        super().setUpClass()

    @classmethod
    def tearDownClass(cls) -> None:
        super().tearDownClass()
        cls._board.stop()
        for name, value in cls._saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        cls._prefix.cleanup()
