"""Completion asked of this kernel and of the stock IPython kernel with the same texts and objects.

Every match the stock kernel gives for a name that exists on the board must be offered here too (a
match is compared as the text it completes to, so a different cursor_start does not matter).
"""

from __future__ import annotations

import os

import pytest
from helpers import KernelSession

SETUP = """
import os, json, collections, xml.etree
d = {"alpha": 1, "beta": 2, "gamma key": 3}
def func(apple, banana=2, *, cherry=3):
    return apple
class Thing:
    attr_one = 1
    def method_two(self):
        return 2
thing = Thing()
my_list = [1, 2]
my_value = 3
"""

# Names the stock kernel offers that a board session does not have (they end a terminal frontend here).
IPYTHON_ONLY = {"exit", "quit"}


def texts(files: str) -> list[str]:
    return [
        # modules after import / from
        "import pla",
        "import o",
        "import js",
        "import json.de",
        "import os.pa",
        "import xml.etree.El",
        "import os, sy",
        "from os import pa",
        "from platform import ma",
        "from json import lo",
        "from collections import Or",
        "from xml.etree import Ele",
        "from js",
        "from xml.e",
        # a module named in the cell, before it ran
        "import colorsys\ncolorsys.rg",
        "import textwrap as tw\ntw.de",
        "import os\nos.pa",
        # attributes and names
        "os.path.jo",
        "thing.meth",
        "thing.at",
        "json.lo",
        "collections.Ord",
        "str.upp",
        "d.ke",
        "fun",
        "thi",
        "my_",
        "zi",
        "isinst",
        "Non",
        "ra",
        "print(my_v",
        # call keywords
        "func(1, ban",
        "func(che",
        "sorted([], ke",
        "print('x', se",
        # dict keys
        'd["',
        "d['",
        'd["al',
        "d['be",
        "d[",
        # files in strings
        f'open("{files}/',
        f'open("{files}/fi',
        f"open('{files}/sub",
        f'x = "{files}/file',
        # magics
        "%ti",
        "%%bas",
        "%cd",
        "%wh",
        "%%writ",
        "%ps",
        f"%cd {files}/su",
        f"%run {files}/filet",
        "%timeit -",
        "%%bash --n",
        "!ech",
    ]


def completed(session: KernelSession, text: str) -> set[str]:
    reply = session.request("complete", text, len(text))
    start = reply["cursor_start"]
    return {text[:start] + match for match in reply["matches"]}


@pytest.mark.timeout(300)
def test_every_stock_match_for_a_board_name_is_offered(ours, stock, tmp_path):
    files = tmp_path / "files"
    (files / "subdir").mkdir(parents=True)
    (files / "fileone.txt").write_text("1")
    (files / "filetwo.py").write_text("2")
    for session in (ours, stock):
        assert session.run(SETUP).status == "ok"
    samples = texts(str(files))
    assert len(samples) >= 40
    missing, stock_total, ours_total = {}, 0, 0
    for text in samples:
        theirs = completed(stock, text)
        mine = completed(ours, text)
        stock_total += len(theirs)
        ours_total += len(mine)
        # the name a match completes to (the last word), to leave out IPython's own names
        expected = {m for m in theirs if m.rsplit(".", 1)[-1].split("\n")[-1] not in IPYTHON_ONLY}
        expected = {m for m in expected if not m.split("\n")[-1].split(".")[-1].startswith("_")}
        if "%" not in text:  # IPython also offers %magics after `import os, ` or `print(x, `
            expected = {m for m in expected if "%" not in m}
        if text.startswith("%") and " " in text:  # a magic's argument: IPython adds Python names
            expected = {m for m in expected if os.path.exists(m.split()[-1])}  # (`%cd /tmp/su` -> /tmp/sum)
        if expected - mine:
            missing[text] = sorted(expected - mine)
    print(f"{len(samples)} texts; stock kernel {stock_total} matches, this kernel {ours_total}")
    assert not missing, missing
