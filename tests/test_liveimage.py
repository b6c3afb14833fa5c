"""Live images: self.display("var") streams a board variable into one display, updated in place.

Real board servers and real kernels on 127.0.0.1. Frame updates keep the parent of the cell that
called display(), so these tests read IOPub directly (execute_interactive drops other cells' output).
"""

from __future__ import annotations

import base64
import io
import os
import queue
import sys
import time
from pathlib import Path

import pytest
from helpers import KernelSession, free_port, start_board
from PIL import Image

from rpyc_ikernel import agent

NO_PILLOW_BOARD = Path(__file__).with_name("board_without_pillow.py")
BOARD_STATE = "import _rpyc_ikernel_state as _state, sys as _sys"


def image_bytes(fmt: str, color=(200, 30, 30), size=(32, 24), mode="RGB") -> bytes:
    out = io.BytesIO()
    Image.new(mode, size, color).save(out, fmt)
    return out.getvalue()


def literal(data: bytes) -> str:
    """Board code that evaluates to these bytes."""
    return f"__import__('base64').b64decode({base64.b64encode(data).decode()!r})"


class Frontend:
    """Runs cells without waiting and keeps every IOPub message, whatever cell it belongs to."""

    def __init__(self, kernel: KernelSession) -> None:
        self.kernel = kernel
        self.messages: list[dict] = []

    def execute(self, code: str) -> str:
        return self.kernel.client.execute(code)

    def run(self, code: str, timeout: float = 30) -> dict:
        """Run a cell to its end; its execute_reply content (IOPub messages keep being collected)."""
        msg_id = self.execute(code)
        self.collect_until(lambda: self._idle(msg_id), timeout)
        while True:
            reply = self.kernel.client.get_shell_msg(timeout=timeout)
            if reply["parent_header"].get("msg_id") == msg_id:
                return reply["content"]

    def _idle(self, msg_id: str) -> bool:
        return any(
            m["msg_type"] == "status"
            and m["content"]["execution_state"] == "idle"
            and m["parent_header"].get("msg_id") == msg_id
            for m in self.messages
        )

    def collect_until(self, done, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not done():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            try:
                self.messages.append(self.kernel.client.get_iopub_msg(timeout=min(left, 0.2)))
            except queue.Empty:
                pass
        return True

    def collect_for(self, seconds: float) -> None:
        self.collect_until(lambda: False, seconds)

    def of_type(self, msg_type: str, parent: str | None = None) -> list[dict]:
        return [
            m
            for m in self.messages
            if m["msg_type"] == msg_type and (parent is None or m["parent_header"].get("msg_id") == parent)
        ]

    def displays(self, parent: str | None = None) -> list[dict]:
        """display_data messages that carry a display_id."""
        return [m for m in self.of_type("display_data", parent) if (m["content"].get("transient") or {})]

    def updates(self, display_id: str) -> list[dict]:
        return [
            m["content"]["data"]
            for m in self.of_type("update_display_data")
            if m["content"]["transient"]["display_id"] == display_id
        ]

    def stdout(self, parent: str | None = None) -> str:
        return "".join(m["content"]["text"] for m in self.of_type("stream", parent))

    def wait_for_updates(self, display_id: str, count: int, timeout: float = 15) -> list[dict]:
        self.collect_until(lambda: len(self.updates(display_id)) >= count, timeout)
        return self.updates(display_id)


def display_id_of(message: dict) -> str:
    return message["content"]["transient"]["display_id"]


def decoded(data: dict, mime: str) -> bytes:
    return base64.b64decode(data[mime])


@pytest.fixture()
def frontend(kernel) -> Frontend:
    return Frontend(kernel)


def last_frame_request(port: int) -> float:
    """When the board's agent last served a frame request (0 if never)."""
    from rpyc_ikernel.board import Address, Board
    from rpyc_ikernel.link import close_connection

    conn, _ = Board(Address("127.0.0.1", port), "probe").open_connection()  # with the board's token
    try:
        conn.execute(BOARD_STATE)
        return conn.eval("getattr(_state, 'last_frame_request', 0.0)")
    finally:
        close_connection(conn)


def assert_no_frame_requests(port: int, seconds: float = 1.0) -> None:
    first = last_frame_request(port)
    time.sleep(seconds)
    assert last_frame_request(port) == first, "the board still serves frame requests"


# --------------------------------------------------------------------------- through a real kernel


def test_first_frame_is_display_data_then_changes_update_it_in_place(frontend):
    red, blue = image_bytes("JPEG", (220, 0, 0)), image_bytes("JPEG", (0, 0, 220))
    frontend.run(f"img_buffer = {literal(red)}")
    cell = frontend.execute('# exec(self.display("img_buffer", interval=0.05))')
    frontend.collect_until(lambda: frontend._idle(cell), 30)
    [first] = frontend.displays(cell)
    assert decoded(first["content"]["data"], "image/jpeg") == red
    display_id = display_id_of(first)
    assert display_id

    frontend.run(f"img_buffer = {literal(blue)}")
    [update] = frontend.wait_for_updates(display_id, 1)
    assert decoded(update, "image/jpeg") == blue

    # The same content again, in new objects of other types: nothing is resent.
    frontend.run("img_buffer = bytearray(img_buffer)\nimport io\nimg_buffer = io.BytesIO(bytes(img_buffer))")
    frontend.collect_for(0.6)
    assert len(frontend.updates(display_id)) == 1
    assert not frontend.of_type("clear_output")

    frontend.run(f"img_buffer = memoryview({literal(red)})")
    updates = frontend.wait_for_updates(display_id, 2)
    assert decoded(updates[1], "image/jpeg") == red
    # Updates belong to the cell that called display(), even when another cell is running.
    assert all(m["parent_header"]["msg_id"] == cell for m in frontend.of_type("update_display_data"))


def test_several_variables_each_in_its_own_display(frontend):
    png, gif = image_bytes("PNG", (0, 200, 0)), image_bytes("GIF", (0, 0, 200))
    frontend.run(
        f"import io\nfrom PIL import Image\ncamera = io.BytesIO({literal(png)})\nlcd = {literal(gif)}\n"
        "drawing = Image.new('RGBA', (20, 10), (10, 20, 30, 128))"
    )
    cell = frontend.execute(
        '# exec(self.display("camera"))\n# exec(self.display("lcd", interval=0.02))\n'
        '# exec(self.display("drawing", interval=0.1))'
    )
    frontend.collect_until(lambda: frontend._idle(cell), 30)
    camera, lcd, drawing = frontend.displays(cell)
    assert len({display_id_of(camera), display_id_of(lcd), display_id_of(drawing)}) == 3
    assert decoded(camera["content"]["data"], "image/png") == png
    assert decoded(lcd["content"]["data"], "image/gif") == gif
    picture = Image.open(io.BytesIO(decoded(drawing["content"]["data"], "image/png")))
    assert picture.size == (20, 10) and picture.mode == "RGBA"

    frontend.run("from PIL import ImageDraw\nImageDraw.Draw(drawing).point((3, 3), fill='white')")
    [update] = frontend.wait_for_updates(display_id_of(drawing), 1)
    assert Image.open(io.BytesIO(decoded(update, "image/png"))).getpixel((3, 3)) == (255, 255, 255, 255)
    assert frontend.updates(display_id_of(camera)) == frontend.updates(display_id_of(lcd)) == []


def test_missing_or_wrong_value_shows_one_message_and_the_stream_waits(frontend):
    reply = frontend.run('# exec(self.display("later", interval=0.05))')
    assert reply["status"] == "ok"
    [first] = frontend.displays()
    assert first["content"]["data"] == {
        "text/plain": "[live image later] later is not defined on the board yet; waiting for it"
    }
    display_id = display_id_of(first)
    frontend.collect_for(0.5)
    assert frontend.updates(display_id) == []  # the message is shown once, not once per look

    frontend.run("later = [1, 2, 3]")
    [message] = frontend.wait_for_updates(display_id, 1)
    assert "later holds a list, not an image" in message["text/plain"]

    jpeg = image_bytes("JPEG")
    frontend.run(f"later = {literal(jpeg)}")
    updates = frontend.wait_for_updates(display_id, 2)
    assert decoded(updates[1], "image/jpeg") == jpeg

    frontend.run("later = b'not an image at all'")
    updates = frontend.wait_for_updates(display_id, 3)
    assert "not JPEG, PNG, GIF or BMP" in updates[2]["text/plain"]
    assert frontend.run("print('still fine')")["status"] == "ok"


def test_bmp_is_transcoded_on_a_board_with_pillow(frontend):
    bmp = image_bytes("BMP", (10, 200, 10))
    frontend.run(f"img_buffer = {literal(bmp)}")
    frontend.run('# exec(self.display("img_buffer"))')
    [first] = frontend.displays()
    data = first["content"]["data"]
    assert "image/jpeg" in data  # RGB: JPEG, the cheap encoding for the board
    assert Image.open(io.BytesIO(decoded(data, "image/jpeg"))).size == (32, 24)


def test_bmp_is_transcoded_in_the_kernel_when_the_board_has_no_pillow(kernelspec_prefix):
    board = start_board([sys.executable, str(NO_PILLOW_BOARD), "--host", "127.0.0.1"])
    kernel = KernelSession.start(board_port=board.port)
    try:
        frontend = Frontend(kernel)
        assert frontend.run("import PIL")["ename"] in ("ImportError", "ModuleNotFoundError")
        bmp, jpeg = image_bytes("BMP", (10, 10, 200), mode="RGB"), image_bytes("JPEG")
        frontend.run(f"img_buffer = {literal(bmp)}")
        frontend.run('# exec(self.display("img_buffer", interval=0.05))')
        [first] = frontend.displays()
        png = decoded(first["content"]["data"], "image/png")
        assert Image.open(io.BytesIO(png)).getpixel((0, 0)) == (10, 10, 200)
        frontend.run(f"img_buffer = {literal(jpeg)}")  # JPEG needs no Pillow anywhere
        [update] = frontend.wait_for_updates(display_id_of(first), 1)
        assert decoded(update, "image/jpeg") == jpeg
    finally:
        kernel.stop()
        board.stop()


def test_stop_display_by_name_and_all(frontend):
    frontend.run(f"a = {literal(image_bytes('PNG', (1, 2, 3)))}\nb = a")
    frontend.run('# exec(self.display("a", interval=0.05))\n# exec(self.display("b", interval=0.05))')
    display_a, display_b = (display_id_of(m) for m in frontend.displays())

    cell = frontend.execute('# exec(self.stop_display("a"))')
    frontend.collect_until(lambda: frontend._idle(cell), 30)
    assert frontend.stdout(cell) == "Stopped live image a\n"
    frontend.run(f"a = b = {literal(image_bytes('PNG', (9, 9, 9)))}")
    assert len(frontend.wait_for_updates(display_b, 1)) == 1
    frontend.collect_for(0.5)
    assert frontend.updates(display_a) == []

    cell = frontend.execute("# exec(self.stop_display())\n# exec(self.stop_display('nope'))")
    frontend.collect_until(lambda: frontend._idle(cell), 30)
    assert frontend.stdout(cell) == "Stopped live image b\nNo live image of 'nope' is running\n"
    frontend.run(f"b = {literal(image_bytes('PNG', (7, 7, 7)))}")
    frontend.collect_for(0.5)
    assert len(frontend.updates(display_b)) == 1


def test_a_running_cell_keeps_running_while_frames_flow(frontend):
    cell = frontend.execute(
        '# exec(self.display("img_buffer", interval=0.05))\n'
        "import io, time\nfrom PIL import Image\n"
        "for step in range(15):\n"
        "    out = io.BytesIO()\n"
        "    Image.new('RGB', (32, 24), (step * 15, 0, 0)).save(out, 'JPEG')\n"
        "    img_buffer = out.getvalue()\n"
        "    time.sleep(0.1)\n"
        "print('steps done', step + 1)"
    )
    frontend.collect_until(lambda: frontend._idle(cell), 60)
    display_id = display_id_of(frontend.displays(cell)[0])
    end = next(i for i, m in enumerate(frontend.messages) if m["msg_type"] == "stream")  # last line
    before_end = [
        m
        for m in frontend.messages[:end]
        if m["msg_type"] == "update_display_data" and display_id_of(m) == display_id
    ]
    assert len(before_end) >= 5, "frames should flow while the cell runs"
    assert frontend.stdout(cell) == "steps done 15\n"


def test_an_interrupt_stops_the_streams_and_the_running_cell(frontend, board):
    cell = frontend.execute(
        '# exec(self.display("img_buffer", interval=0.02))\n'
        "import itertools\nframes = [bytes([255, 216, 255, n]) + bytes(100) for n in range(50)]\n"
        "for frame in itertools.cycle(frames):\n    img_buffer = frame\n"
    )
    frontend.collect_until(lambda: len(frontend.of_type("update_display_data")) >= 5, 30)
    frontend.kernel.manager.interrupt_kernel()
    frontend.collect_until(lambda: frontend._idle(cell), 30)
    error = frontend.of_type("error", cell)[0]["content"]
    assert error["ename"] == "KeyboardInterrupt"
    frontend.collect_for(0.3)
    count = len(frontend.of_type("update_display_data"))
    frontend.run("img_buffer = bytes([255, 216, 255]) + b'changed'")
    frontend.collect_for(0.5)
    assert len(frontend.of_type("update_display_data")) == count


def test_an_interrupt_between_cells_stops_the_streams(kernelspec_prefix):
    board = start_board()
    kernel = KernelSession.start(board_port=board.port)
    try:
        frontend = Frontend(kernel)
        frontend.run(f"img_buffer = {literal(image_bytes('JPEG'))}")
        frontend.run('# exec(self.display("img_buffer", interval=0.05))')
        assert last_frame_request(board.port) > 0
        kernel.manager.interrupt_kernel()  # nothing is running: only the stream is there to stop
        time.sleep(0.5)
        assert_no_frame_requests(board.port)
        reply = frontend.run("# exec(self.stop_display())\n1 + 1")
        assert reply["status"] == "ok"
        assert "No live image is running" in frontend.stdout()
    finally:
        kernel.stop()
        board.stop()


def test_shutdown_stops_the_streams(kernelspec_prefix):
    board = start_board()
    kernel = KernelSession.start(board_port=board.port)
    try:
        frontend = Frontend(kernel)
        frontend.run('# exec(self.display("img_buffer", interval=0.05))')
        assert last_frame_request(board.port) > 0
    finally:
        kernel.stop()
    try:
        assert not kernel.manager.is_alive()
        assert_no_frame_requests(board.port)
    finally:
        board.stop()


def test_a_lost_board_shows_a_message_and_the_stream_comes_back(kernelspec_prefix):
    board = start_board()
    kernel = KernelSession.start(board_port=board.port)
    try:
        frontend = Frontend(kernel)
        frontend.run(f"img_buffer = {literal(image_bytes('JPEG'))}")
        frontend.run('# exec(self.display("img_buffer", interval=0.05))')
        display_id = display_id_of(frontend.displays()[0])
        board.stop()
        [lost] = frontend.wait_for_updates(display_id, 1)
        assert "board link lost" in lost["text/plain"] and "retrying" in lost["text/plain"]
        board = start_board(port=board.port)  # a rebooted board: the variable is gone
        updates = frontend.wait_for_updates(display_id, 2)
        assert "not defined on the board yet" in updates[1]["text/plain"]
        jpeg = image_bytes("JPEG", (0, 99, 0))
        # The kernel's main link is stale too; connect_remote opens a fresh one (the stream needed none).
        frontend.run(f'# exec(self.connect_remote("127.0.0.1", port={board.port}))')
        frontend.run(f"img_buffer = {literal(jpeg)}")
        updates = frontend.wait_for_updates(display_id, 3)
        assert decoded(updates[2], "image/jpeg") == jpeg
    finally:
        kernel.stop()
        board.stop()


def test_streams_follow_connect_remote_to_another_board(frontend, board):
    other = start_board()
    try:
        frontend.run(f"img_buffer = {literal(image_bytes('JPEG'))}")
        frontend.run('# exec(self.display("img_buffer", interval=0.05))')
        display_id = display_id_of(frontend.displays()[0])
        frontend.run(f'# exec(self.connect_remote("127.0.0.1", port={other.port}))')
        [update] = frontend.wait_for_updates(display_id, 1)
        assert "not defined on the board yet" in update["text/plain"]
        jpeg = image_bytes("JPEG", (0, 0, 99))
        frontend.run(f"img_buffer = {literal(jpeg)}")
        updates = frontend.wait_for_updates(display_id, 2)
        assert decoded(updates[1], "image/jpeg") == jpeg
    finally:
        frontend.run(f'# exec(self.connect_remote("127.0.0.1", port={board.port}))')
        other.stop()


def test_frames_from_a_plain_rpyc_board(kernelspec_prefix):
    board = start_board([sys.executable, str(Path(__file__).with_name("plain_board.py"))])
    kernel = KernelSession.start(board_port=board.port)
    try:
        frontend = Frontend(kernel)
        jpeg = image_bytes("JPEG")
        frontend.run(f"img_buffer = {literal(jpeg)}")
        frontend.run('# exec(self.display("img_buffer", interval=0.05))')
        [first] = frontend.displays()
        assert decoded(first["content"]["data"], "image/jpeg") == jpeg
    finally:
        kernel.stop()
        board.stop()


def test_errors_are_one_line_and_the_kernel_lives_on(frontend):
    reply = frontend.run("# exec(self.display(img_buffer))")
    assert reply["status"] == "error" and reply["ename"] == "NameError"
    reply = frontend.run('# exec(self.display("img buffer"))')
    assert reply["ename"] == "ValueError"
    assert "the name of a board variable" in reply["evalue"]
    reply = frontend.run('# exec(self.display("img_buffer", interval=-1))')
    assert reply["ename"] == "ValueError"
    assert frontend.run("1 + 1")["status"] == "ok"


def test_display_without_a_board_is_a_one_line_error(kernelspec_prefix):
    kernel = KernelSession.start(board_port=free_port())  # nothing listens there
    try:
        frontend = Frontend(kernel)
        started = time.monotonic()
        reply = frontend.run('# exec(self.display("img_buffer"))')
        assert time.monotonic() - started < 15
        assert reply["ename"] == "BoardUnreachable"
        assert "cannot reach board 127.0.0.1:" in reply["evalue"] and "\n" not in reply["evalue"]
        assert frontend.displays() == []
        assert kernel.manager.is_alive()
    finally:
        kernel.stop()


# --------------------------------------------------------------------------- the agent alone


def test_agent_reads_frames_by_digest():
    jpeg = image_bytes("JPEG")
    namespace = {"jpeg": jpeg, "gif": image_bytes("GIF"), "array": [1], "empty": b""}
    digest, kind, payload = agent.read_image(namespace, "jpeg", "")
    assert (kind, payload) == ("jpeg", jpeg)
    assert agent.read_image(namespace, "jpeg", digest) == (digest, "same", b"")
    assert agent.read_image({"jpeg": bytearray(jpeg)}, "jpeg", digest) == (digest, "same", b"")
    assert agent.read_image(namespace, "gif", "")[1] == "gif"
    digest, kind, text = agent.read_image(namespace, "array", "")
    assert kind == "message" and "holds a list" in text
    assert agent.read_image(namespace, "array", digest)[1] == "same"
    assert "is empty" in agent.read_image(namespace, "empty", "")[2]
    assert agent.read_images("no such session", (("x", ""),))[0][1] == "message"


def test_agent_sends_a_frame_once_per_link_to_pipelined_requests():
    """Requests on their way together carry the digest the kernel knew when they left."""
    from rpyc_ikernel.agent import session as agent_session

    first, second = image_bytes("JPEG"), image_bytes("PNG")
    namespace = {"cam": first}
    agent_session.SESSIONS["pipelined"] = type("Stub", (), {"namespace": namespace})()
    try:
        shown = agent.read_images("pipelined", (("cam", ""),), "link-1")[0][0]  # the display's first frame
        namespace["cam"] = second
        in_flight = [agent.read_images("pipelined", (("cam", shown),), "link-1")[0] for _ in range(3)]
        assert [kind for _, kind, _ in in_flight] == ["png", "same", "same"]  # sent once, not 3 times
        assert in_flight[1][0] == in_flight[0][0]
        assert agent.read_images("pipelined", (("cam", shown),), "link-2")[0][1] == "png"  # another link
        assert agent.read_images("pipelined", (("cam", ""),), "link-1")[0][1] == "png"  # a new display
        assert agent.read_images("pipelined", (("cam", shown),))[0][1] == "png"  # no link id: as asked
    finally:
        del agent_session.SESSIONS["pipelined"]


def test_agent_sniffs_formats_from_magic_bytes():
    assert agent.sniff_image_format(image_bytes("JPEG")) == "jpeg"
    assert agent.sniff_image_format(image_bytes("PNG")) == "png"
    assert agent.sniff_image_format(image_bytes("GIF")) == "gif"
    assert agent.sniff_image_format(image_bytes("BMP")) == "bmp"
    assert agent.sniff_image_format(b"\x00\x01") == ""


# --------------------------------------------------------------------------- a camera loop (no sleep)

CAMERA_LOOP = (
    "import io, time\nfrom PIL import Image\n"
    "def color(n):\n    return (n % 16 * 16 + 8, n // 16 % 16 * 16 + 8, n // 256 % 16 * 16 + 8)\n"
    "def camera(kind, seconds, final=None):\n"
    "    global img_buffer\n"
    "    n, started = 0, time.monotonic()\n"
    "    while time.monotonic() - started < seconds:\n"
    "        n += 1\n"
    "        image = Image.new('RGB', (64, 48), color(n))\n"
    "        image.paste(color(n // 4096), (32, 0, 64, 48))\n"
    "        out = io.BytesIO()\n"
    "        image.save(out, 'JPEG')\n"
    "        if kind == 'bytesio':\n"
    "            img_buffer = io.BytesIO(out.getvalue() + n.to_bytes(4, 'big'))\n"
    "        elif kind == 'pil':\n"
    "            img_buffer = image\n"
    "        else:\n"
    "            import numpy\n"
    "            img_buffer = numpy.asarray(image)\n"
    "    if final is not None:\n"
    "        img_buffer = Image.new('RGB', (64, 48), color(final))\n"
    "        img_buffer.paste(color(final // 4096), (32, 0, 64, 48))\n"
    "        time.sleep(1.5)\n"
    "    print('frames made', n)\n"
)


def counter_of(data: dict) -> int:
    """The frame number a camera-loop frame shows in its colors (left half: low digits, right: high)."""
    payload = decoded(data, "image/jpeg")
    image = Image.open(io.BytesIO(payload))
    image.load()  # a cut frame fails to decode here
    assert image.size == (64, 48)
    image = image.convert("RGB")
    digits = []
    for left in (0, 32):
        red, green, blue = image.getpixel((left + 16, 24))
        for corner in ((left + 1, 1), (left + 30, 46)):
            pixel = image.getpixel(corner)
            assert max(abs(a - b) for a, b in zip(pixel, (red, green, blue))) <= 6, "a torn frame"
        digits.append(round((red - 8) / 16) + 16 * round((green - 8) / 16) + 256 * round((blue - 8) / 16))
    return digits[0] + 4096 * digits[1]


def camera_frames(frontend: Frontend, kind: str, seconds: float = 2.5, final: int = 1234) -> list[dict]:
    frontend.run(CAMERA_LOOP)
    cell = frontend.execute(
        f'# exec(self.display("img_buffer", interval=0.02))\ncamera({kind!r}, {seconds}, final={final})'
    )
    assert frontend.collect_until(lambda: frontend._idle(cell), 60)
    assert "frames made" in frontend.stdout(cell)
    display_id = display_id_of(frontend.displays(cell)[0])
    return frontend.updates(display_id)


@pytest.mark.parametrize("kind", ["bytesio", "pil", "numpy"])
def test_frames_of_a_camera_loop_arrive_in_order_whole_and_current(frontend, kind):
    if kind == "numpy":
        pytest.importorskip("numpy")
    updates = camera_frames(frontend, kind)
    assert len(updates) >= 5, "frames should flow while the camera loop runs"
    counters = [counter_of(data) for data in updates]
    assert counters[-1] == 1234, "the last frame shown is the variable's last value"
    if kind == "bytesio":  # the exact frame number rides after the JPEG's end
        numbers = [int.from_bytes(decoded(data, "image/jpeg")[-4:], "big") for data in updates[:-1]]
        assert numbers == sorted(set(numbers)), "frames arrive once each, in order"
        assert numbers == counters[:-1]
    else:
        assert counters[:-1] == sorted(set(counters[:-1])), "frames arrive once each, in order"


def test_a_camera_loop_lends_the_frames_thread_the_gil_and_stopping_ends_the_ticks(frontend, board):
    frontend.run(CAMERA_LOOP)
    cell = frontend.execute('# exec(self.display("img_buffer", interval=0.02))\ncamera("pil", 3.0)')
    assert frontend.collect_until(lambda: frontend._idle(cell), 60)
    frontend.run("# exec(self.stop_display())")
    from rpyc_ikernel.board import Address, Board
    from rpyc_ikernel.link import close_connection

    conn, _ = Board(Address("127.0.0.1", board.port), "probe").open_connection()
    try:
        conn.execute(BOARD_STATE + "\nimport signal as _signal")
        assert conn.eval("_state.lends") > 0, "the main thread never lent the GIL"
        deadline = time.monotonic() + 10
        while conn.eval("_signal.getitimer(_signal.ITIMER_PROF)") != (0.0, 0.0):
            assert time.monotonic() < deadline, "the tick timer still runs after the streams stopped"
            time.sleep(0.2)
    finally:
        close_connection(conn)
    # Sleeps are not cut short by ticks, and cells run as before.
    reply = frontend.run(
        "import time\n_t = time.monotonic(); time.sleep(0.3); print(time.monotonic() - _t >= 0.3)"
    )
    assert reply["status"] == "ok"


def board_lends(port: int, token: str | None = None) -> int:
    """How many times the board's main thread has lent the GIL to a frames thread so far."""
    from rpyc_ikernel.board import Address, Board
    from rpyc_ikernel.handshake import Credentials
    from rpyc_ikernel.link import close_connection

    credentials = Credentials(token=token) if token else None
    conn, _ = Board(Address("127.0.0.1", port), "probe", credentials).open_connection()
    try:
        conn.execute(BOARD_STATE)
        return conn.eval("getattr(_state, 'lends', 0)")
    finally:
        close_connection(conn)


def test_a_camera_loop_over_a_tls_link_lends_the_gil_and_frames_arrive_whole_in_order(
    kernelspec_prefix, board
):
    """A paired kernel (TOKEN@sha256:FINGERPRINT) talks TLS: requests the board has decrypted but not
    read yet are invisible to poll() on the socket, and the lending must see them all the same."""
    lines = [line.strip() for line in board.output().splitlines() if "@sha256:" in line]
    assert lines, board.output()
    pairing = lines[-1].split()[0]
    if pairing.startswith("TOKEN@"):  # the token was made earlier: the line names its file
        token = (Path(os.environ["XDG_CONFIG_HOME"]) / "rpyc_ikernel" / "token").read_text().strip()
        pairing = token + pairing[len("TOKEN") :]
    session = KernelSession.start(board_port=board.port, env={"RPYC_IKERNEL_TOKEN": pairing})
    try:
        frontend = Frontend(session)
        frontend.kernel.run("1")
        security = frontend.kernel.run("# exec(print(self.board.security))").stream()
        assert "TLS (certificate pinned" in security, security
        before = board_lends(board.port, pairing)
        updates = camera_frames(frontend, "bytesio")
        assert board_lends(board.port, pairing) > before, "the main thread never lent the GIL over TLS"
        assert len(updates) >= 5, "frames should flow while the camera loop runs"
        numbers = [int.from_bytes(decoded(data, "image/jpeg")[-4:], "big") for data in updates[:-1]]
        assert numbers == sorted(set(numbers)), "frames arrive once each, in order"
        assert counter_of(updates[-1]) == 1234
    finally:
        session.stop()


def test_a_users_own_sigprof_handler_is_kept_and_frames_still_flow(frontend):
    frontend.run(
        "import signal\nticks = []\nsignal.signal(signal.SIGPROF, lambda *args: ticks.append(1))\n"
        + CAMERA_LOOP
    )
    cell = frontend.execute('# exec(self.display("img_buffer", interval=0.05))\ncamera("bytesio", 1.5)')
    assert frontend.collect_until(lambda: frontend._idle(cell), 60)
    display_id = display_id_of(frontend.displays(cell)[0])
    assert len(frontend.updates(display_id)) >= 3
    check = frontend.execute("print(len(ticks), signal.getsignal(signal.SIGPROF).__name__)")
    frontend.collect_until(lambda: frontend._idle(check), 30)
    assert frontend.stdout(check) == "0 <lambda>\n"


def test_agent_encodes_uint8_arrays_and_explains_other_arrays():
    numpy = pytest.importorskip("numpy")
    from rpyc_ikernel.agent import liveimage

    array = numpy.zeros((24, 32, 3), numpy.uint8)
    array[:, :, 1] = 200
    digest, kind, payload = liveimage.read_image({"a": array}, "a", "")
    assert kind == "jpeg" and Image.open(io.BytesIO(payload)).size == (32, 24)
    assert liveimage.read_image({"a": array}, "a", digest)[1] == agent.wire.IMAGE_SAME
    gray = numpy.full((10, 12), 77, numpy.uint8)
    png = liveimage.png_bytes(12, 10, "L", gray.tobytes())  # a board without Pillow sends this
    image = Image.open(io.BytesIO(png))
    assert (image.mode, image.size, image.getpixel((3, 4))) == ("L", (12, 10), 77)
    _digest, kind, text = liveimage.read_image({"a": array.astype("float32")}, "a", "")
    assert kind == agent.wire.IMAGE_MESSAGE and "float32 array of shape (24, 32, 3)" in text


def test_agent_sends_a_pil_image_once_and_again_when_drawn_on():
    """An RGB image is digested by its JPEG: unchanged (even as a new object) it is "same", drawn on
    in place it is sent again; other modes keep their pixel digest."""
    from rpyc_ikernel.agent import liveimage

    image = Image.new("RGB", (32, 24), (10, 200, 30))
    digest, kind, payload = liveimage.read_image({"a": image}, "a", "")
    assert kind == "jpeg" and Image.open(io.BytesIO(payload)).size == (32, 24)
    assert liveimage.read_image({"a": image}, "a", digest)[1] == agent.wire.IMAGE_SAME
    assert liveimage.read_image({"a": image.copy()}, "a", digest)[1] == agent.wire.IMAGE_SAME
    image.putpixel((5, 5), (255, 255, 255))
    image.paste((0, 0, 0), (0, 0, 16, 12))
    drawn, kind, payload = liveimage.read_image({"a": image}, "a", digest)
    assert drawn != digest and kind == "jpeg"
    assert Image.open(io.BytesIO(payload)).convert("RGB").getpixel((2, 2))[0] < 40  # the pasted black
    rgba = Image.new("RGBA", (8, 8), (1, 2, 3, 4))
    digest, kind, _payload = liveimage.read_image({"a": rgba}, "a", "")
    assert kind == "png" and liveimage.read_image({"a": rgba}, "a", digest)[1] == agent.wire.IMAGE_SAME


def test_a_tick_arriving_during_a_tick_does_nothing():
    """The main thread's tick handler can be entered again between two of its own bytecodes (the
    next tick): it must not wait for a lock its outer self holds (that hung a camera cell for good)."""
    from rpyc_ikernel.agent import lending

    state = lending._state()
    looks = []

    class Nesting:
        def lend_if_wanted(self):
            looks.append(1)
            lending._on_tick(None, None)  # the next tick, while this one runs

    lender = Nesting()
    state.lenders.add(lender)
    try:
        lending._on_tick(None, None)
    finally:
        state.lenders.discard(lender)
    assert looks == [1]
    assert not state.in_tick


# --------------------------------------------------------------------------- the kernel's window of requests


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_one_stall_shrinks_the_window_of_requests_once_and_it_comes_back_at_once():
    """A far link (125 ms round trips, interval 62.5 ms: 3 requests on their way). A stall delays
    all three answers; that is one event, not three, and the window is whole two answers later."""
    from rpyc_ikernel.liveimage import FlightWindow

    clock, interval, rtt = FakeClock(), 1 / 16, 1 / 8  # binary fractions: the sums are exact
    window = FlightWindow(clock)
    sent = []
    for step in range(40):  # steady: a request every interval, each answered one round trip later
        sent.append(clock.now)
        clock.now += interval
        if step >= 1:
            window.record(clock.now - sent[-2], interval, sent[-2])
    assert window.size == 3  # ceil(rtt / interval) + 1
    in_flight = [clock.now - 2 * interval, clock.now - interval, clock.now]
    clock.now += rtt + 0.25  # the stall: the three answers come together, 250 ms late
    for when in in_flight:
        window.record(clock.now - when, interval, when)
    assert window.size == 2, "one stall shrinks the window by one"
    for _ in range(2):  # the link is quick again
        sent_at = clock.now
        clock.now += rtt
        window.record(rtt, interval, sent_at)
    assert window.size == 3


def test_a_queue_that_persists_shrinks_the_window_each_round_trip():
    from rpyc_ikernel.liveimage import FlightWindow

    clock = FakeClock()
    window = FlightWindow(clock)
    for _ in range(20):
        sent_at = clock.now
        clock.now += 0.2
        window.record(0.2, 0.05, sent_at)
    assert window.size == 5
    sizes = []
    for _ in range(6):  # every answer late by a whole second: the link is far slower than the camera
        sent_at = clock.now
        clock.now += 1.2
        window.record(1.2, 0.05, sent_at)
        sizes.append(window.size)
    assert sizes == [4, 3, 2, 1, 1, 1]


def test_the_cell_gets_its_main_thread_back_only_during_a_long_encode(monkeypatch):
    """Taking the GIL back after an encode costs a second hand-off: worth it only for a long one."""
    from rpyc_ikernel.agent import lending, liveimage

    calls = []
    monkeypatch.setattr(lending, "give_back", lambda: calls.append(1))
    small = Image.new("RGB", (32, 24), (1, 2, 3))
    monkeypatch.setattr(liveimage, "_LAST_ENCODE", [0.0001])  # the last encode was short
    assert liveimage.encode_pil_image(small)[0] == "jpeg"
    assert calls == []
    liveimage._LAST_ENCODE[0] = 0.05  # the last one took 50 ms of CPU
    assert liveimage.encode_pil_image(small)[0] == "jpeg"
    assert calls == [1]
