"""Writes the example notebooks in examples/ (run it after editing a cell here)."""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
KERNELSPEC = {"name": "rpyc", "display_name": "Python (board via rpyc)", "language": "python"}


def getting_started() -> nbformat.NotebookNode:
    cells = [
        new_markdown_cell(
            "# Getting started with rpyc_ikernel\n\n"
            "Every cell below runs **on the board**. A line `# exec(...)` runs in the kernel instead, "
            "with `self` bound to the kernel. With no `connect_remote`, the board is the one named by "
            "`RPYC_IKERNEL_HOST`/`RPYC_IKERNEL_PORT`, else this machine's loopback on port 18812."
        ),
        new_code_cell('# exec(self.connect_remote())\nprint("hello from the board")'),
        new_markdown_cell("Where are we? These values come from the board's Python, not the notebook's."),
        new_code_cell(
            "import os\nimport platform\nimport sys\n\n"
            "print(platform.node(), sys.version.split()[0], os.getpid())"
        ),
        new_markdown_cell("Variables stay on the board between cells; the last expression is shown."),
        new_code_cell("squares = [n * n for n in range(10)]\nsum(squares)"),
        new_markdown_cell("Output streams into the cell as the board prints it."),
        new_code_cell(
            "import time\nfor step in range(3):\n    print('step', step, flush=True)\n    time.sleep(0.1)"
        ),
        new_markdown_cell("Rich values show like IPython shows them: a Pillow image is an image."),
        new_code_cell(
            "try:\n"
            "    from PIL import Image, ImageDraw\n"
            "    picture = Image.new('RGB', (160, 60), 'navy')\n"
            "    ImageDraw.Draw(picture).text((10, 22), 'drawn on the board', fill='white')\n"
            "except ImportError:\n"
            "    picture = 'Pillow is not installed on the board'\n"
            "picture"
        ),
        new_markdown_cell("Errors show the board's traceback."),
        new_code_cell(
            "def divide(a, b):\n    return a / b\n\ndivide(1, 0)", metadata={"tags": ["raises-exception"]}
        ),
        new_markdown_cell("`# exec(...)` lines run in the kernel process, before the rest of the cell."),
        new_code_cell(
            '# exec(print("kernel side: the board is", self.board.address))\n'
            'print("board side:", len(squares))'
        ),
    ]
    notebook = new_notebook(cells=cells)
    notebook.metadata["kernelspec"] = KERNELSPEC
    notebook.metadata["language_info"] = {"name": "python"}
    return notebook


if __name__ == "__main__":
    EXAMPLES.mkdir(exist_ok=True)
    nbformat.write(getting_started(), EXAMPLES / "getting_started.ipynb")
