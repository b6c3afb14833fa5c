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

from ..session import UsageError

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


class ScriptMagics(object):
    def system(self, command):
        """`!cmd`: run it in the board's shell, its output streamed into the cell; sets _exit_code."""
        self.user_ns["_exit_code"] = self._run(self.var_expand(command), shell=True)

    def getoutput(self, command, split=True):
        """`x = !cmd` / `!!cmd`: the command's output (stdout and stderr) as a list of lines."""
        chunks = []
        self.user_ns["_exit_code"] = self._run(self.var_expand(command), shell=True, sink=chunks.append)
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
        """Run the cell as a bash script on the board."""
        self._script("bash", line, cell)

    def cell_sh(self, line, cell):
        """Run the cell as a sh script on the board."""
        self._script("sh", line, cell)

    def _script(self, program, line, cell):
        if line.strip():
            raise UsageError("%%%%%s takes no options on the board" % program)
        self.user_ns["_exit_code"] = self._run([program, "-c", cell], shell=False)

    def _run(self, command, shell, sink=None):
        """Run a command on the board; output goes to sink (default: the cell). Interruptible."""
        session = self.session
        cell = session.cell
        if cell is not None and cell.thread_ident != threading.get_ident():
            cell = None  # a thread of the user's: the cell's interrupt is not for it
        if sink is None:

            def sink(text):
                session.write_stream("stdout", text, block=True)

        options = {"start_new_session": True} if os.name == "posix" else {}
        process = subprocess.Popen(
            command,
            shell=shell,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            **options,
        )
        reader = threading.Thread(target=_pump, args=(process.stdout, sink), daemon=True)
        reader.start()
        waiting = cell.waiting_inside_agent() if cell is not None else contextlib.ExitStack()
        try:
            with waiting:
                return _wait(process, reader, cell)
        except BaseException:
            _stop_process(process)
            raise


def _wait(process, reader, cell):
    """The command's exit code once it ended and its output is read (checking for interrupts)."""
    exited_at = None
    while True:
        if cell is not None:
            cell.check_interrupt()
        if reader.is_alive():
            reader.join(0.05)
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
        if not reader.is_alive() or time.monotonic() - exited_at > 0.5:
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
