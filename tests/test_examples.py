"""The example notebooks run headless with nbclient against a loopback board; outputs are checked."""

from __future__ import annotations

import base64
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def execute(name: str, board_port: int, monkeypatch) -> nbformat.NotebookNode:
    monkeypatch.setenv("RPYC_IKERNEL_HOST", "127.0.0.1")
    monkeypatch.setenv("RPYC_IKERNEL_PORT", str(board_port))
    notebook = nbformat.read(EXAMPLES / name, as_version=4)
    NotebookClient(notebook, kernel_name="rpyc", timeout=60).execute()
    return notebook


def text_of(cell) -> str:
    return "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")


def test_getting_started(kernelspec_prefix, board, monkeypatch):
    notebook = execute("getting_started.ipynb", board.port, monkeypatch)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert "Connected to board 127.0.0.1:" in text_of(code[0])
    assert "hello from the board" in text_of(code[0])
    assert text_of(code[1]).split()[-1] == str(board.process.pid)
    assert code[2].outputs[0]["data"]["text/plain"] == "285"
    assert text_of(code[3]) == "step 0\nstep 1\nstep 2\n"
    picture = code[4].outputs[0]["data"]
    if "image/png" in picture:
        assert base64.b64decode(picture["image/png"]).startswith(b"\x89PNG")
    else:
        pytest.skip("Pillow is not installed where the board runs")
    error = code[5].outputs[0]
    assert error.output_type == "error" and error.ename == "ZeroDivisionError"
    assert text_of(code[6]) == f"kernel side: the board is 127.0.0.1:{board.port}\nboard side: 10\n"
    assert [cell.execution_count for cell in code] == list(range(1, len(code) + 1))


def images_of(cell) -> list[tuple[str, bytes]]:
    return [
        (mime, base64.b64decode(output["data"][mime]))
        for output in cell.outputs
        if output.output_type == "display_data"
        for mime in ("image/jpeg", "image/png")
        if mime in output.get("data", {})
    ]


def test_view_images(kernelspec_prefix, board, monkeypatch):
    notebook = execute("view_images.ipynb", board.port, monkeypatch)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    first_frame = int(code[0].outputs[0]["data"]["text/plain"])
    # The live display was updated in place while the cell drew: one output, the newest frame.
    [(mime, frame)] = images_of(code[1])
    assert mime == "image/jpeg" and frame.startswith(b"\xff\xd8\xff") and len(frame) != first_frame
    assert text_of(code[1]) == "drew 60 frames\n"
    [(mime, lcd)] = images_of(code[2])
    assert mime == "image/jpeg"  # a grayscale Pillow image, encoded on the board
    # "not defined yet" first, then replaced in place by the frame once the cell defined it.
    [(mime, frame)] = images_of(code[3])
    assert mime == "image/jpeg" and len(code[3].outputs) == 1
    assert text_of(code[4]) == "Stopped live images img_buffer, lcd, not_yet\n"


def test_camera_notebook_is_text_only():
    notebook = nbformat.read(EXAMPLES / "camera_on_a_board.ipynb", as_version=4)
    assert {cell.cell_type for cell in notebook.cells} == {"markdown"}
    text = "\n".join(cell.source for cell in notebook.cells)
    assert '# exec(self.display("img_buffer", interval=0.05))' in text
