"""Shell commands on the board: `!cmd`, `x = !cmd`, %%bash, %%sh, %pip, %sx and the ls/cp/... aliases.

Output streams into the cell as it comes (partial lines too); an interrupt stops the command and its
children (SIGINT to its process group, then SIGKILL).
"""

import codecs
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time

from ..errors import UsageError
from .base import Magics

SHELL_ALIASES = {
    "ls": "ls",
    "ll": "ls -F -l",
    "cat": "cat",
    "cp": "cp",
    "mv": "mv",
    "rm": "rm",
    "rmdir": "rmdir",
    "mkdir": "mkdir",
}


class ShellOutput(list):
    """What `x = !cmd` gives: the output's lines, with IPython's .s / .n / .l shortcuts."""

    @property
    def s(self):
        return " ".join(self)

    @property
    def n(self):
        return "\n".join(self)

    @property
    def l(self):  # noqa: E743 - IPython's name
        return list(self)


class ScriptMagics(Magics):
    def system(self, command):
        """`!cmd`: run it in the board's shell, its output streamed into the cell; sets _exit_code."""
        self.user_ns["_exit_code"] = self._run(self.shell.var_expand(command), shell=True)

    def getoutput(self, command, split=True):
        """`x = !cmd` / `!!cmd`: the command's output (stdout and stderr) as a list of lines."""
        chunks = []
        self.user_ns["_exit_code"] = self._run(self.shell.var_expand(command), shell=True, sink=chunks.append)
        text = "".join(chunks)
        return ShellOutput(text.splitlines()) if split else text

    def line_system(self, line):
        return self.getoutput(line)

    line_sx = line_system

    def line_pip(self, line):
        """pip of the board's Python: '%pip install NAME' installs on the board."""
        import shlex

        self.system("%s -m pip %s" % (shlex.quote(sys.executable), line))

    def cell_bash(self, line, cell):
        """Run the cell as a bash script on the board (options as %%script's)."""
        self._script(["bash"], line, cell, "%%bash")

    def cell_sh(self, line, cell):
        """Run the cell as a sh script on the board (options as %%script's)."""
        self._script(["sh"], line, cell, "%%sh")

    def cell_script(self, line, cell):
        """'%%script PROGRAM [ARGS]': run the cell with PROGRAM on the board, the cell on its stdin."""
        import shlex

        words = shlex.split(line)
        program = []
        while words and not words[0].startswith("--"):
            program.append(words.pop(0))
        if not program:
            raise UsageError("%%script needs a program, e.g. %%script bash")
        self._script(program, " ".join(shlex.quote(w) for w in words), cell, "%%script")

    def _script(self, program, line, cell, magic):
        """As IPython 9: stdout and stderr apart, a non-zero exit raises CalledProcessError unless
        --no-raise-error; --out/--err keep the text in a variable instead."""
        options = _script_options(line, magic)
        if options["bg"]:
            raise UsageError("%s --bg is not available on the board; run the command with !cmd &" % magic)
        out, err = [], []
        sink = out.append if options["out"] else None
        err_sink = err.append if options["err"] else self._stream_sink("stderr")
        try:
            code = self._run(program, shell=False, sink=sink, err_sink=err_sink, stdin=cell)
        except KeyboardInterrupt:
            print("Process was interrupted.")
            if not options["raise_error"]:
                return
            raise subprocess.CalledProcessError(-signal.SIGINT, cell) from None
        self.user_ns["_exit_code"] = code
        if options["out"]:
            self.user_ns[options["out"]] = "".join(out)
        if options["err"]:
            self.user_ns[options["err"]] = "".join(err)
        if code != 0 and options["raise_error"]:
            raise subprocess.CalledProcessError(code, cell)

    def _stream_sink(self, name):
        session = self.session

        def sink(text):
            session.write_stream(name, text, block=True)

        return sink

    def _run(self, command, shell, sink=None, err_sink=None, stdin=None):
        """Run a command on the board; output goes to sink (default: the cell's stdout), stderr to
        err_sink (default: with stdout); stdin is text for its standard input. Interruptible."""
        cell = self.session.cell
        if cell is not None and cell.thread_ident != threading.get_ident():
            cell = None  # a thread of the user's: the cell's interrupt is not for it
        if sink is None:
            sink = self._stream_sink("stdout")
        options = {"start_new_session": True} if os.name == "posix" else {}
        process = subprocess.Popen(
            command,
            shell=shell,
            stdin=subprocess.DEVNULL if stdin is None else subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT if err_sink is None else subprocess.PIPE,
            **options,
        )
        readers = [threading.Thread(target=_pump, args=(process.stdout, sink), daemon=True)]
        if err_sink is not None:
            readers.append(threading.Thread(target=_pump, args=(process.stderr, err_sink), daemon=True))
        if stdin is not None:
            readers.append(threading.Thread(target=_feed, args=(process.stdin, stdin), daemon=True))
        for reader in readers:
            reader.start()
        waiting = cell.waiting_inside_agent() if cell is not None else contextlib.ExitStack()
        try:
            with waiting:
                return _wait(process, readers, cell)
        except BaseException:
            _stop_process(process)
            raise


def _script_options(line, magic):
    """%%script's options: --out VAR, --err VAR, --bg, --proc VAR, --no-raise-error."""
    import shlex

    options = {"out": None, "err": None, "bg": False, "proc": None, "raise_error": True}
    words = shlex.split(line)
    while words:
        word = words.pop(0)
        name = word[2:].replace("-", "_") if word.startswith("--") else None
        if name in ("out", "err", "proc") and words:
            options[name] = words.pop(0)
        elif name == "bg":
            options["bg"] = True
        elif name == "no_raise_error":
            options["raise_error"] = False
        else:
            raise UsageError(
                "%s: unknown option %r (it takes --out VAR, --err VAR, --no-raise-error)" % (magic, word)
            )
    return options


def _feed(pipe, text):
    """Write a script to a child's stdin, then close it (a thread: a big cell may fill the pipe)."""
    try:
        pipe.write(text.encode("utf-8", "surrogateescape"))
    except (OSError, ValueError):
        pass
    finally:
        try:
            pipe.close()
        except OSError:
            pass


def _wait(process, readers, cell):
    """The command's exit code once it ended and its output is read (checking for interrupts)."""
    exited_at = None
    while True:
        if cell is not None:
            cell.check_interrupt()
        alive = [r for r in readers if r.is_alive()]
        if alive:
            alive[0].join(0.05)
        else:
            try:
                process.wait(0.05)
            except subprocess.TimeoutExpired:
                pass
        code = process.poll()
        if code is None:
            continue
        # a background job (`cmd &`) may keep the pipe open: do not wait for it long
        exited_at = exited_at or time.monotonic()
        if not any(r.is_alive() for r in readers) or time.monotonic() - exited_at > 0.5:
            return code


def _pump(pipe, sink):
    """Copy a child's output to sink as it comes (decoded as UTF-8, partial lines included)."""
    decoder = codecs.getincrementaldecoder("utf-8")("replace")
    try:
        while True:
            data = os.read(pipe.fileno(), 65536)
            if not data:
                break
            text = decoder.decode(data)
            if text:
                sink(text)
        text = decoder.decode(b"", True)
        if text:
            sink(text)
    except (OSError, ValueError):
        pass
    finally:
        pipe.close()


def _stop_process(process):
    """Stop a shell command and its children: SIGINT like Ctrl-C, then SIGKILL if it lingers."""
    if process.poll() is not None:
        return
    try:
        if os.name == "posix":
            os.killpg(process.pid, signal.SIGINT)
        else:
            process.terminate()
        process.wait(1.0)
    except subprocess.TimeoutExpired:
        try:
            if os.name == "posix":
                os.killpg(process.pid, signal.SIGKILL)
            else:
                process.kill()
        except OSError:
            pass
    except OSError:
        pass
