"""One owner for every RPYC_IKERNEL_* variable (rpyc_ikernel/settings.py): declared there, read through
it, written by install with the same names, one on/off parser, listed in the README."""

from __future__ import annotations

import re

import pytest
from helpers import REPO, KernelSession

from rpyc_ikernel import settings
from rpyc_ikernel.adb import adb_requested
from rpyc_ikernel.board import Address
from rpyc_ikernel.handshake import Credentials
from rpyc_ikernel.install import kernel_json
from rpyc_ikernel.outputs import trusted_from_environment

NAME = re.compile(r"RPYC_IKERNEL_[A-Z0-9_]*[A-Z0-9]")
FLAGS = [setting for setting in settings.SETTINGS if setting.parse is settings.on_off]


def test_every_variable_the_package_names_is_declared_in_settings():
    used = {}
    for path in sorted((REPO / "rpyc_ikernel").rglob("*.py")):
        for name in NAME.findall(path.read_text(encoding="utf-8")):
            used.setdefault(name, path.relative_to(REPO).as_posix())
    undeclared = {name: where for name, where in used.items() if name not in settings.BY_NAME}
    assert undeclared == {}


def test_the_kernel_reads_them_only_through_settings():
    """No laptop module reads os.environ for them; each is read through its Setting, or by the board
    server (a standalone file, which reads its own two)."""
    package = REPO / "rpyc_ikernel"
    sources = {
        path.relative_to(REPO).as_posix(): path.read_text(encoding="utf-8") for path in package.rglob("*.py")
    }
    server = sources.pop("rpyc_ikernel/server.py")
    del sources["rpyc_ikernel/settings.py"]
    direct = re.compile(r"environ(?:\.get\(|\[)\s*[\"']RPYC_IKERNEL_")
    assert [path for path, text in sources.items() if direct.search(text)] == []
    unread = []
    for setting in settings.SETTINGS:
        attribute = setting.name[len("RPYC_IKERNEL_") :]
        by_kernel = any(f"settings.{attribute}.read(" in text for text in sources.values())
        by_server = f'os.environ.get("{setting.name}")' in server
        if (setting.reader != "server" and not by_kernel) or (setting.reader != "kernel" and not by_server):
            unread.append(setting.name)
    assert unread == []


def test_the_readme_lists_them_all():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    start = readme.index("<!-- settings table: made by python -m rpyc_ikernel.settings -->\n")
    start = readme.index("\n", start) + 1
    end = readme.index("<!-- end of settings table -->", start)
    assert readme[start:end] == settings.markdown_table(), "run python -m rpyc_ikernel.settings"


@pytest.mark.parametrize("word", ["1", "yes", "True", " on ", "enabled"])
def test_every_flag_takes_the_same_words_for_on(word):
    environ = {setting.name: word for setting in FLAGS}
    assert [setting.read(environ) for setting in FLAGS] == [True] * len(FLAGS)
    credentials = Credentials.from_environment(environ)
    assert (credentials.tls, credentials.allow_open) == (True, True)
    assert adb_requested(environ) is True
    assert trusted_from_environment(environ) is True


@pytest.mark.parametrize("word", ["0", "no", "False", "off", "disabled", "", "  "])
def test_every_flag_takes_the_same_words_for_off(word):
    environ = {setting.name: word for setting in FLAGS}
    assert [setting.read(environ) for setting in FLAGS] == [False] * len(FLAGS)
    assert Credentials.from_environment(environ).tls is False
    assert adb_requested(environ) is False


@pytest.mark.parametrize("setting", FLAGS, ids=lambda setting: setting.name)
def test_a_flag_that_is_neither_is_one_line_naming_it(setting):
    with pytest.raises(settings.SettingError) as caught:
        setting.read({setting.name: "maybe"})
    message = str(caught.value)
    assert message.startswith(f"{setting.name}='maybe' is neither on nor off: give 1 or 0")
    assert "\n" not in message


def test_what_install_writes_the_kernel_reads_back():
    env = kernel_json("Board", "raspberrypi.local", 18813, "t" * 32, False, "/etc/ca.pem", "0123ABCD")["env"]
    assert set(env) <= set(settings.BY_NAME)
    assert Address.from_environment(env) == Address("raspberrypi.local", 18813)
    credentials = Credentials.from_environment(env)
    assert (credentials.token, credentials.tls, credentials.ca) == ("t" * 32, True, "/etc/ca.pem")
    assert adb_requested(env) is True
    assert settings.ADB_SERIAL.read(env) == "0123ABCD"


def test_unset_is_the_default():
    assert [setting.read({}) for setting in settings.SETTINGS] == [
        setting.default for setting in settings.SETTINGS
    ]
    assert Address.from_environment({}) == Address("127.0.0.1", 18812)


def test_a_kernel_with_a_bad_flag_starts_and_says_which(kernelspec_prefix):
    """The kernel starts; each cell names the variable to fix (even the one a misconfigured board reads)."""
    session = KernelSession.start(env={"RPYC_IKERNEL_TRUST_BOARD_HTML": "maybe"})
    try:
        cell = session.run("1 + 1")
    finally:
        session.stop()
    assert cell.status == "error"
    assert "RPYC_IKERNEL_TRUST_BOARD_HTML='maybe' is neither on nor off" in cell.reply["evalue"]
