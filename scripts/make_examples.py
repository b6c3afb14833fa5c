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


DRAW_FRAME = """\
import io
import math
import time

from PIL import Image, ImageDraw


def draw_frame(step, size=(320, 240)):
    \"\"\"A JPEG of a ball bouncing over a dark field: a stand-in for a camera frame.\"\"\"
    width, height = size
    image = Image.new("RGB", size, (20, 30, 60))
    draw = ImageDraw.Draw(image)
    x = int((width - 40) * (0.5 + 0.5 * math.sin(step / 7)))
    y = int((height - 40) * abs(math.sin(step / 5)))
    draw.ellipse((x, y, x + 40, y + 40), fill=(250, 180, 40))
    draw.text((8, 8), f"frame {step}", fill="white")
    out = io.BytesIO()
    image.save(out, "JPEG", quality=80)
    return out.getvalue()


img_buffer = draw_frame(0)
len(img_buffer)"""


def view_images() -> nbformat.NotebookNode:
    cells = [
        new_markdown_cell(
            "# Live images from the board\n\n"
            '`# exec(self.display("img_buffer", interval=0.05))` shows a **board variable** as an image '
            "that updates in place whenever it changes: JPEG, PNG, GIF or BMP bytes (`bytes`, "
            "`bytearray`, `BytesIO`, `memoryview`) or a Pillow image. No camera here: the board draws "
            "frames with Pillow. See `camera_on_a_board.ipynb` for real cameras."
        ),
        new_code_cell(DRAW_FRAME),
        new_markdown_cell(
            "Show it live. The display below is updated in place while the same cell keeps drawing: "
            "frames travel on a connection of their own, beside the running cell."
        ),
        new_code_cell(
            '# exec(self.display("img_buffer", interval=0.05))\n'
            "for step in range(1, 61):\n"
            "    img_buffer = draw_frame(step)\n"
            "    time.sleep(0.05)\n"
            'print("drew", step, "frames")'
        ),
        new_markdown_cell(
            "A Pillow image works as it is (the board encodes it), and several variables stream at "
            "once, each in its own display."
        ),
        new_code_cell(
            '# exec(self.display("lcd", interval=0.1))\n'
            'lcd = Image.new("L", (160, 120), 0)\n'
            "pen = ImageDraw.Draw(lcd)\n"
            "for bar in range(16):\n"
            "    pen.rectangle((bar * 10, 120 - bar * 7, bar * 10 + 8, 120), fill=40 + bar * 13)\n"
            "    time.sleep(0.1)"
        ),
        new_markdown_cell(
            "A variable that does not exist yet (or holds something else) shows one line, and the "
            "display waits for it."
        ),
        new_code_cell(
            '# exec(self.display("not_yet", interval=0.05))\n'
            "time.sleep(0.5)\n"
            "not_yet = draw_frame(99)\n"
            "time.sleep(0.5)"
        ),
        new_markdown_cell(
            'Stop one stream with `self.stop_display("lcd")`, or all of them. Interrupting the '
            "kernel and shutting it down stop them too; each display keeps its last frame."
        ),
        new_code_cell("# exec(self.stop_display())"),
    ]
    notebook = new_notebook(cells=cells)
    notebook.metadata["kernelspec"] = KERNELSPEC
    notebook.metadata["language_info"] = {"name": "python"}
    return notebook


CAMERA_INTRO = """\
# A camera on a real board

Text only: these cells show the shape of the code for real cameras; copy them into a notebook
that runs on your board. The pattern is always the same: a loop on the board grabs a frame,
encodes it as JPEG, and stores the bytes in a variable; one `# exec(self.display(...))` line shows
that variable live.

```python
# exec(self.display("img_buffer", interval=0.05))
while True:
    img_buffer = grab_a_jpeg()   # bytes, bytearray, BytesIO or memoryview; or a Pillow image
```

The display updates in place each time the bytes change (at most every `interval` seconds;
unchanged frames are not sent again). Interrupt the kernel to stop the loop: that stops the stream
too, and the display keeps the last frame. A loop that never sleeps is fine: while frames are
requested, the board's agent makes Python hand the GIL over every millisecond instead of every
five, so frames keep flowing at the interval's pace."""

CAMERA_OPENCV = """\
## OpenCV (USB webcam, or any V4L2 camera)

```python
# exec(self.display("img_buffer", interval=0.05))
import cv2

camera = cv2.VideoCapture(0)
camera.set(cv2.CAP_PROP_FRAME_WIDTH, 320)
camera.set(cv2.CAP_PROP_FRAME_HEIGHT, 240)
try:
    while True:
        ok, frame = camera.read()
        if ok:
            img_buffer = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 80])[1].tobytes()
finally:
    camera.release()
```

A numpy array itself is not an image file: storing `frame` instead of its JPEG bytes shows a
one-line hint in the display."""

CAMERA_PICAMERA = """\
## Raspberry Pi camera (picamera2)

```python
# exec(self.display("img_buffer", interval=0.05))
import io

from picamera2 import Picamera2

picam2 = Picamera2()
picam2.configure(picam2.create_video_configuration(main={"size": (640, 480)}))
picam2.start()
while True:
    out = io.BytesIO()
    picam2.capture_file(out, format="jpeg")
    img_buffer = out.getvalue()
```"""

CAMERA_MAIX = """\
## MaixPy3-style boards, and LCD buffers

Where `camera.capture()` returns a Pillow image (MaixPy3 on Linux boards), store the image itself;
the board encodes it (JPEG for RGB and grayscale, PNG otherwise):

```python
# exec(self.display("img_buffer", interval=0.05))
from maix import camera

while True:
    img_buffer = camera.capture()
```

An LCD or framebuffer you draw into works the same way: keep a Pillow image of it, e.g.
`lcd = Image.frombytes("RGB", (240, 240), raw_pixels)`, and `# exec(self.display("lcd"))`."""

CAMERA_TIPS = """\
## Sizes and rates

- A 320x240 JPEG is about 10-15 KB: 20 frames/s is about 300 KB/s on the network; 640x480 about
  four times that. Lower the resolution or the JPEG quality on a slow Wi-Fi link.
- `interval` is the pace of the stream (0.05 s: up to 20 frames/s). The board only encodes and sends
  frames that changed.
- BMP and other formats are converted to JPEG/PNG on the board if it has Pillow, else in the kernel.
- Store a new bytes object per frame (`img_buffer = out.getvalue()`), as above. A loop that
  rewrites one `BytesIO` in place can be read halfway through a write, and show a torn frame.
- A Pillow image is compared pixel by pixel at every look; for large frames, JPEG bytes cost
  the board less.
- Several cameras: one `self.display(...)` per variable, each in its own display;
  `# exec(self.stop_display("img_buffer"))` stops one, `# exec(self.stop_display())` all."""


def camera_on_a_board() -> nbformat.NotebookNode:
    cells = [
        new_markdown_cell(text)
        for text in (CAMERA_INTRO, CAMERA_OPENCV, CAMERA_PICAMERA, CAMERA_MAIX, CAMERA_TIPS)
    ]
    notebook = new_notebook(cells=cells)
    notebook.metadata["kernelspec"] = KERNELSPEC
    notebook.metadata["language_info"] = {"name": "python"}
    return notebook


if __name__ == "__main__":
    EXAMPLES.mkdir(exist_ok=True)
    nbformat.write(getting_started(), EXAMPLES / "getting_started.ipynb")
    nbformat.write(view_images(), EXAMPLES / "view_images.ipynb")
    nbformat.write(camera_on_a_board(), EXAMPLES / "camera_on_a_board.ipynb")
