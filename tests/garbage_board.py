"""Announces a board whose TXT records are garbage (undecodable, no '=', oversized keys) and whose
port refuses connections. Run inside a test namespace: python garbage_board.py NAME."""

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rpyc_ikernel import server  # noqa: E402

assert server.load_announcer()
announcer = server.Announcer(
    sys.argv[1], 9, "0.0.0.0", {"hostname": "junk"}, say=lambda text: print(text, flush=True)
)
entries = [b"\xff\xfe\x00", b"noequals", b"version=\xff\xff", b"auth=" + b"x" * 200, b"=empty-key"]
announcer.txt = b"".join(bytes([len(entry)]) + entry for entry in entries)
announcer.start()
while True:
    time.sleep(60)
