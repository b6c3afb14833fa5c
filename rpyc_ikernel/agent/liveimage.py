"""Live images: the board's end of the kernel's self.display("name").

One request (read_images) answers for every variable shown, with the encoded bytes only of frames
that changed. Loaded on the first frame request.
"""

import io
import socket
import struct
import sys
import threading
import time
import zlib

from . import lending, wire
from .iostream import process_state
from .session import SESSIONS

IMAGE_SIGNATURES = (
    (b"\xff\xd8\xff", "jpeg"),
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"GIF87a", "gif"),
    (b"GIF89a", "gif"),
    (b"BM", "bmp"),
)
BROWSER_FORMATS = tuple(wire.IMAGE_MIME)  # what a notebook shows as is
_MISSING = object()
JPEG_QUALITY = 85
_PILLOW = []  # [PIL.Image module or None], looked up once per agent version
# While frames are requested, a cell that never sleeps must hand the GIL to the serving thread
# sooner than Python's default 5 ms: every blocking socket call of that thread waits one interval
# to get the GIL back. 1 ms: ~5x the frames from a busy cell, for a few percent of its speed.
FRAME_SWITCH_INTERVAL = 0.001
SWITCH_RESTORE_AFTER = 1.0  # seconds without a frame request before the interval is put back
# What each frames link was last sent, per variable: the kernel pipelines its requests, so those on
# their way together carry the digest it knew when they left; without this a frame that changed
# would be sent once per request in flight (up to 8 times), for the kernel to drop all but one.
SENT_BY_LINK = {}  # link id -> {name: digest}
MAX_LINKS = 16  # links remembered (the least recently used one is forgotten first)


def sniff_image_format(data):
    """'jpeg', 'png', 'gif' or 'bmp' from the first bytes; '' when none of them."""
    head = bytes(data[:8])
    for magic, name in IMAGE_SIGNATURES:
        if head.startswith(magic):
            return name
    return ""


def _pillow():
    """PIL.Image if Pillow is installed on the board, else None (checked once: imports touch disk)."""
    if not _PILLOW:
        try:
            from PIL import Image
        except ImportError:
            Image = None
        _PILLOW.append(Image)
    return _PILLOW[0]


def _is_pil_image(value):
    return type(value).__module__.startswith("PIL.") and hasattr(value, "tobytes") and hasattr(value, "save")


# Pillow encodes without the GIL, so a frames thread lent the GIL can hand the cell back its main
# thread meanwhile (lending.give_back). But taking it back costs a second hand-off, which is worth
# it only for a long encode: measured on a camera loop at 50 requests/s, a 320x240 JPEG (0.3 ms
# here) cost the cell 2.7 ms of waiting per request when given back, 1.9 ms when not.
GIVE_BACK_AFTER = 0.002  # CPU seconds the last encode took, beyond which the next one gives back
_LAST_ENCODE = [0.0]  # CPU seconds of this thread (waits for the GIL do not count) the last encode took


def encode_pil_image(image):
    """(format, bytes): JPEG for RGB/L images (fast to encode on a weak board, small), else PNG."""
    started = time.thread_time()
    if _LAST_ENCODE[0] > GIVE_BACK_AFTER:
        lending.give_back()  # the cell runs while Pillow encodes
    out = io.BytesIO()
    if image.mode in ("RGB", "L"):
        image.save(out, "JPEG", quality=JPEG_QUALITY)
        kind = "jpeg"
    else:
        if image.mode not in ("RGBA", "LA", "P", "1", "I;16", "I"):
            image = image.convert("RGBA")
        image.save(out, "PNG")
        kind = "png"
    _LAST_ENCODE[0] = time.thread_time() - started
    return kind, out.getvalue()


ARRAY_MODES = {2: "L", 3: "RGB", 4: "RGBA"}  # channels of a uint8 array -> Pillow mode ("L" for HxW)
PNG_COLOR_TYPES = {"L": 0, "RGB": 2, "RGBA": 6}


def _is_ndarray(value):
    return type(value).__name__ == "ndarray" and type(value).__module__ == "numpy"


def _array_mode(array):
    """The Pillow mode of a uint8 HxW, HxWx1, HxWx3 or HxWx4 array, or None for any other array."""
    if str(array.dtype) != "uint8":
        return None
    shape = tuple(array.shape)
    if len(shape) == 2:
        return "L"
    if len(shape) == 3 and shape[2] in (1, 3, 4):
        return "L" if shape[2] == 1 else ARRAY_MODES[shape[2]]
    return None


def encode_array(array, mode, raw):
    """(format, bytes) of a uint8 array: JPEG through Pillow if the board has it, else a stdlib PNG."""
    height, width = int(array.shape[0]), int(array.shape[1])
    image_module = _pillow()
    if image_module is not None:
        return encode_pil_image(image_module.frombytes(mode, (width, height), raw))
    return "png", png_bytes(width, height, mode, raw)


def png_bytes(width, height, mode, raw):
    """A PNG of raw 8-bit rows, with zlib only (no Pillow on the board): fast level, no filters."""
    stride = width * len(mode)
    rows = b"".join(b"\0" + raw[row * stride : (row + 1) * stride] for row in range(height))

    def chunk(kind, data):
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, PNG_COLOR_TYPES[mode], 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows, 1))
        + chunk(b"IEND", b"")
    )


def _image_bytes(value):
    """The encoded bytes a bytes-like value holds, or None for any other kind of value."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, io.BytesIO):
        return value.getvalue()  # CPython shares the buffer: no copy, and hash() stays cached
    return None


def _wrong_type_message(name, value):
    kind = type(value).__name__
    hint = ""
    if kind == "ndarray":
        kind = "%s array of shape %s" % (getattr(value, "dtype", "?"), tuple(getattr(value, "shape", ())))
        hint = " or a uint8 array (HxW, HxWx3 RGB, HxWx4 RGBA)"
    return (
        "%s holds a %s, not an image: store JPEG/PNG/GIF/BMP bytes (bytes, bytearray, BytesIO,"
        " memoryview), a PIL image%s in it; waiting" % (name, kind, hint)
    )


def _transcode(name, data, kind):
    """BMP and other formats become JPEG/PNG here if Pillow is on the board, else the kernel does it."""
    image_module = _pillow()
    if image_module is None:
        return kind or "unknown", data
    try:
        image = image_module.open(io.BytesIO(data))
        image.load()
    except Exception:
        return wire.IMAGE_MESSAGE, (
            "%s holds %d bytes that are not JPEG, PNG, GIF or BMP, nor any image Pillow can read;"
            " waiting" % (name, len(data))
        )
    return encode_pil_image(image)


def _encoded_image(name, data):
    """(kind, payload) for encoded bytes: sent as they are when a notebook can show them."""
    if not data:
        return wire.IMAGE_MESSAGE, "%s is empty (0 bytes); waiting for a frame" % name
    kind = sniff_image_format(data)
    if kind in BROWSER_FORMATS:
        return kind, data
    return _transcode(name, data, kind)


def _describe_image(namespace, name):
    """(digest, a function making (kind, payload)): the digest is cheap, the frame is made if needed.

    The digest of bytes is hash(): bytes objects cache it, so an unchanged frame costs no hashing,
    and hash() never releases the GIL (hashlib and zlib.crc32 do on large data, and getting the GIL
    back costs a whole switch interval while a busy cell holds it).
    """
    value = namespace.get(name, _MISSING)
    if value is _MISSING:
        text = "%s is not defined on the board yet; waiting for it" % name
        return "missing", lambda: (wire.IMAGE_MESSAGE, text)
    data = _image_bytes(value)
    if data is not None:
        return "b%d:%x" % (len(data), hash(data)), lambda: _encoded_image(name, data)
    if _is_pil_image(value):
        if value.mode in JPEG_MODES:
            return _jpeg_digest(value)
        raw = value.tobytes()
        digest = "p%s:%s:%x" % (value.mode, value.size, hash(raw))
        if (
            value.mode in ARRAY_MODES.values()
        ):  # encoded from this copy: a cell drawing on it meanwhile tears nothing
            return digest, lambda: encode_pil_image(_pillow().frombytes(value.mode, value.size, raw))
        return digest, lambda: encode_pil_image(value)
    if _is_ndarray(value):
        mode = _array_mode(value)
        if mode is not None:
            raw = value.tobytes()  # a C-order copy: the cell may change the array meanwhile
            digest = "a%s:%s:%x" % (mode, tuple(value.shape), hash(raw))
            return digest, lambda: encode_array(value, mode, raw)
    return "type:" + type(value).__name__, lambda: (wire.IMAGE_MESSAGE, _wrong_type_message(name, value))


JPEG_MODES = ("RGB", "L")  # PIL images sent as JPEG: digested by their encoding (see _jpeg_digest)


def _jpeg_digest(image):
    """(digest, make) of an RGB/L PIL image from its JPEG, encoded from a copy (a cell drawing on
    the image meanwhile tears nothing).

    Why not hash its pixels: Image.tobytes() packs them through a Python loop (0.2 ms for 320x240
    here, 50x a numpy array's), and a changed frame then needed frombytes and the encode as well,
    all while the busy cell waits for this thread. copy() is one memcpy, and the JPEG of an
    unchanged image is the same bytes, so it still answers "same".
    """
    kind, data = encode_pil_image(image.copy())
    return "j%s:%s:%d:%x" % (image.mode, image.size, len(data), hash(data)), lambda: (kind, data)


def read_image(namespace, name, last_digest):
    """(digest, kind, payload) of one board variable; kind wire.IMAGE_SAME when it did not change."""
    try:
        digest, make = _describe_image(namespace, name)
        if digest == last_digest:
            return digest, wire.IMAGE_SAME, b""
        kind, payload = make()
    except Exception as exc:
        text = "reading %s failed: %s: %s; waiting" % (name, type(exc).__name__, exc)
        digest = "error:" + text
        if digest == last_digest:
            return digest, wire.IMAGE_SAME, b""
        return digest, wire.IMAGE_MESSAGE, text
    return digest, kind, payload


def _streaming_now():
    """Shorten the GIL switch interval while frames are requested (restored once they stop)."""
    lending.requested()
    state = process_state()
    state.last_frame_request = time.monotonic()
    if getattr(state, "saved_switch_interval", None) is not None:
        return
    with state.__dict__.setdefault("frames_lock", threading.Lock()):
        if getattr(state, "saved_switch_interval", None) is not None:
            return
        current = sys.getswitchinterval()
        if current <= FRAME_SWITCH_INTERVAL:
            return  # the board's own, shorter setting stays as it is
        state.saved_switch_interval = current
        sys.setswitchinterval(FRAME_SWITCH_INTERVAL)
    threading.Thread(target=_restore_switch_interval, name="rpyc_ikernel frames", daemon=True).start()


def _restore_switch_interval():
    state = process_state()
    while time.monotonic() - state.last_frame_request < SWITCH_RESTORE_AFTER:
        state.original_sleep(SWITCH_RESTORE_AFTER / 4)
    with state.frames_lock:
        if sys.getswitchinterval() == FRAME_SWITCH_INTERVAL:  # unless someone set another since
            sys.setswitchinterval(state.saved_switch_interval)
        state.saved_switch_interval = None


class OneCallSocketStream(object):
    """The board's end of a frames connection: one recv per request and one send per answer.

    Stands in for rpyc's SocketStream, which polls, then reads a request's header and its body with
    separate calls. Each blocking call lets a busy cell take the GIL, and getting it back costs a
    whole switch interval: this stream halves those waits. Data a recv brings beyond the current
    request stays buffered, so poll() answers from the buffer first.
    """

    MAX_IO_CHUNK = 1 << 26  # rpyc's Channel then writes header, frame and flusher in one send

    def __init__(self, stream):
        self.stream = stream  # rpyc's SocketStream: closing and fileno stay its business
        self.sock = stream.sock
        self.buffer = bytearray()
        self.lender = lending.add(self.sock)  # a busy cell on the main thread hands us the GIL

    @property
    def closed(self):
        return self.stream.closed

    def close(self):
        lending.remove(self.lender)
        self.stream.close()

    def fileno(self):
        return self.stream.fileno()

    def poll(self, timeout):
        if self.buffer or _decrypted(self.sock):
            return True
        left = timeout.timeleft() if hasattr(timeout, "timeleft") else timeout
        if left is None:  # serving for good: wait for the next request inside recv itself
            self._fill()
            return True
        self.lender.parked()
        try:
            return self.stream.poll(timeout)
        finally:
            self.lender.working()

    def read(self, count):
        while len(self.buffer) < count:
            self._fill()
        data = bytes(self.buffer[:count])
        del self.buffer[:count]
        return data

    def write(self, data):
        try:
            self.sock.sendall(data)
        except (OSError, ValueError) as exc:
            self.close()
            raise EOFError(exc)

    def _fill(self):
        while True:
            if not (_decrypted(self.sock) or lending._ready(self.sock)):
                # Wait in poll(), not recv(): the request stays in the socket, where the main
                # thread's tick sees it (and lends us the GIL) while we wait to get the GIL back.
                self.lender.parked()
                try:
                    self.stream.poll(None)
                except (OSError, ValueError) as exc:
                    self.close()
                    raise EOFError(exc)
                self.lender.working()
            try:
                chunk = self.sock.recv(1 << 18)
            except socket.timeout:
                continue
            except (OSError, ValueError) as exc:
                self.close()
                raise EOFError(exc)
            break
        if not chunk:
            self.close()
            raise EOFError("connection closed by peer")
        self.buffer += chunk


def prepare_image_connection(conn):
    """Tune the board's end of a frames connection: no compression, and one call per request.

    conn is this side's rpyc Connection (the kernel passes ``conn.root.getconn()``). Returns what
    was done, for the kernel's log.
    """
    channel = conn._channel
    channel.compress = False  # JPEG/PNG do not compress; zlib would only cost board time
    stream = channel.stream
    sock = getattr(stream, "sock", None)
    if type(stream).__name__ != "SocketStream" or not (type(sock) is socket.socket or _is_tls(sock)):
        return "uncompressed"  # tunnels, pipes, other streams: rpyc's own stream stays
    channel.stream = OneCallSocketStream(stream)
    return "uncompressed, one call per request" + (" (TLS)" if _is_tls(sock) else "")


def _is_tls(sock):
    """An ssl.SSLSocket, known without touching ssl (the server defers that import: 4 MB)."""
    return isinstance(sock, socket.socket) and type(sock).__name__ == "SSLSocket" and hasattr(sock, "pending")


def _decrypted(sock):
    """Bytes a TLS socket has decrypted but not handed out yet: poll() on its descriptor misses them.

    Asked by the serving thread only (OpenSSL objects are not to be used from two threads at once);
    it parks (and lets the main thread poll the descriptor) only once nothing is buffered here.
    """
    pending = getattr(sock, "pending", None)
    return pending is not None and pending() > 0


def _sent_on(link_id):
    """The {name: digest} last sent on this link, most recently used last."""
    sent = SENT_BY_LINK.pop(link_id, None) or {}
    SENT_BY_LINK[link_id] = sent
    while len(SENT_BY_LINK) > MAX_LINKS:
        SENT_BY_LINK.pop(next(iter(SENT_BY_LINK)), None)
    return sent


def read_images(session_id, wanted, link_id=None):
    """The frames of several board variables in one round trip, only those that changed.

    wanted is ((name, digest the kernel shows), ...); the answer holds one (digest, kind, payload)
    per name: kind wire.IMAGE_SAME (payload b""), 'jpeg'/'png'/'gif' (the encoded bytes, sent as they
    are), 'bmp'/'unknown' (bytes for the kernel to transcode: no Pillow here), or wire.IMAGE_MESSAGE
    (payload: one line saying why there is no frame). Only str/bytes/tuples: they cross by value.

    With link_id (one per kernel frames link, whose requests are answered in order) a frame already
    sent on that link counts as shown, unless the kernel's digest is "" (a new display wants it).
    """
    _streaming_now()
    session = SESSIONS.get(session_id)
    namespace = session.namespace if session is not None else {}
    sent = _sent_on(link_id) if link_id is not None else None
    answers = []
    for name, digest in wanted:
        if sent is not None and digest:
            digest = sent.get(name, digest)
        answer = read_image(namespace, name, digest)
        if sent is not None and answer[1] != wire.IMAGE_SAME:
            sent[name] = answer[0]
        answers.append(answer)
    return tuple(answers)
