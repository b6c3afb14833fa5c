"""Running and timing code on the board: %time, %%time, %timeit, %%timeit, %run."""

import builtins
import math
import os
import re
import sys
import time

from ..compiling import compile_cell, run_compiled
from ..errors import UsageError
from .base import Magics


def format_time(seconds, precision=3):
    """A duration as IPython's %time/%timeit print it: '1.23 ms', '45.6 µs', '1min 3s'."""
    if seconds >= 60.0:
        parts = []
        left = seconds
        for suffix, length in (("d", 86400), ("h", 3600), ("min", 60), ("s", 1)):
            value = int(left / length)
            if value > 0:
                left = left % length
                parts.append("%d%s" % (value, suffix))
            if left < 1:
                break
        return " ".join(parts)
    units = ("s", "ms", "\xb5s", "ns")
    order = min(-int(math.floor(math.log10(seconds)) // 3), 3) if seconds > 0 else 3
    order = max(order, 0)
    return "%.*g %s" % (precision, seconds * 1000.0**order, units[order])


def _cpu_times():
    """(user, system) CPU seconds of this process, at the best resolution the board offers."""
    try:
        import resource

        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime, usage.ru_stime
    except ImportError:
        times = os.times()
        return times[0], times[1]


def _timeit_options(line):
    """'-n N -r R -q -o rest' -> ({n, r, q, o}, rest)."""
    options = {"n": None, "r": 7, "q": False, "o": False}
    rest = line.strip()
    while True:
        match = re.match(r"-([nr])\s*(\d+)\s*|-([qo])(?:\s+|$)", rest)
        if not match:
            return options, rest
        if match.group(1):
            options[match.group(1)] = int(match.group(2))
        else:
            options[match.group(3)] = True
        rest = rest[match.end() :]


class ExecutionMagics(Magics):
    def line_time(self, line, cell=None):
        """Time one run of a statement (or the cell), print CPU and wall time, return its value."""
        source = line if cell is None else cell
        if not source.strip():
            raise UsageError("%time needs code to time, e.g. %time sum(range(10**6))")
        body, tail = compile_cell(source.strip() if cell is None else source, "<timed exec>")
        cpu_before = _cpu_times()
        wall_before = time.perf_counter()
        run_compiled(body, self.user_ns)
        value = run_compiled(tail, self.user_ns) if tail is not None else None
        wall = time.perf_counter() - wall_before
        cpu_after = _cpu_times()
        user = cpu_after[0] - cpu_before[0]
        system = cpu_after[1] - cpu_before[1]
        print(
            "CPU times: user %s, sys: %s, total: %s"
            % (format_time(user), format_time(system), format_time(user + system))
        )
        print("Wall time: %s" % format_time(wall))
        return value

    def cell_time(self, line, cell):
        return self.line_time(line, cell)

    def line_timeit(self, line, cell=None):
        """Time a statement over many loops: '%timeit [-n N] [-r R] [-q] [-o] statement'."""
        import timeit

        options, rest = _timeit_options(line)
        setup, statement = ("pass", rest) if cell is None else (rest or "pass", cell)
        if not statement.strip():
            raise UsageError("%timeit needs a statement, e.g. %timeit sum(range(100))")
        timer = timeit.Timer(statement, setup, timer=time.perf_counter, globals=self.user_ns)
        number = options["n"]
        if number is None:
            for exponent in range(10):
                number = 10**exponent
                if timer.timeit(number) >= 0.2:
                    break
        repeat = max(1, options["r"])
        per_loop = [total / number for total in timer.repeat(repeat, number)]
        mean = sum(per_loop) / len(per_loop)
        spread = math.sqrt(sum((x - mean) ** 2 for x in per_loop) / len(per_loop))
        if not options["q"]:
            print(
                "%s \xb1 %s per loop (mean \xb1 std. dev. of %d run%s, %s loop%s each)"
                % (
                    format_time(mean),
                    format_time(spread),
                    repeat,
                    "" if repeat == 1 else "s",
                    "{:,}".format(number),
                    "" if number == 1 else "s",
                )
            )
        if options["o"]:
            return {"loops": number, "repeat": repeat, "timings": per_loop, "average": mean, "stdev": spread}
        return None

    def cell_timeit(self, line, cell):
        return self.line_timeit(line, cell)

    def line_run(self, line):
        """Run a Python file on the board: '%run [-i] FILE [ARGS]'; its names land in your namespace."""
        import shlex

        words = shlex.split(line)
        in_namespace = bool(words) and words[0] == "-i"
        words = words[1:] if in_namespace else words
        if not words:
            raise UsageError("%run needs a file on the board, e.g. %run script.py")
        path = os.path.expanduser(words[0])
        if not os.path.isfile(path) and os.path.isfile(path + ".py"):
            path += ".py"
        if not os.path.isfile(path):
            raise UsageError("File `%s` not found on the board." % words[0])
        with open(path, "rb") as handle:
            code = compile(handle.read(), path, "exec", dont_inherit=True)
        if in_namespace:
            run_ns = self.user_ns
        else:
            run_ns = {"__name__": "__main__", "__file__": path, "__builtins__": builtins}
        saved_argv = sys.argv
        sys.argv = [path] + words[1:]
        try:
            exec(code, run_ns)
        finally:
            sys.argv = saved_argv
            if not in_namespace:
                for name, value in run_ns.items():
                    if name not in ("__name__", "__file__", "__builtins__"):
                        self.user_ns[name] = value

    def line_load(self, line):
        """'%load FILE': put a board file's code in this cell (replacing it), as IPython's %load."""
        import shlex

        words = shlex.split(line)
        if not words:
            raise UsageError("%load needs a file on the board, e.g. %load script.py")
        if len(words) > 1 or words[0].startswith("-"):
            raise UsageError("%load on the board takes one file name (no -r, -s, -n or -y)")
        if "://" in words[-1]:
            raise UsageError("%load of a URL is not available on the board; download the file first")
        path = os.path.expanduser(words[-1])
        if not os.path.isfile(path):
            raise UsageError("File `%s` not found on the board." % words[-1])
        with open(path, encoding="utf-8", errors="replace") as handle:
            contents = handle.read()
        self.shell.set_next_input("# %%load %s\n" % line.strip() + contents, replace=True)

    def line_history(self, line):
        """'%history [-n] [-t] [-l [N]] [-g PATTERN] [RANGE]': this session's inputs on the board."""
        import fnmatch

        words = line.split()
        numbered, raw, last, pattern, ranges = False, True, None, None, []
        while words:
            word = words.pop(0)
            if word == "-n":
                numbered = True
            elif word == "-t":
                raw = False
            elif word == "-l":
                last = int(words.pop(0)) if words and words[0].isdigit() else 10
            elif word == "-g":
                pattern = "*%s*" % (words.pop(0) if words else "")
            elif re.match(r"^\d+(-\d+)?$", word):
                low, _, high = word.partition("-")
                ranges.append((int(low), int(high or low)))
            else:
                raise UsageError(
                    "%%history %s is not available on the board (it takes -n -t -l -g and N-M)" % word
                )
        entries = list(self.session.history.entries(raw))
        if ranges:
            entries = [e for e in entries if any(low <= e[0] <= high for low, high in ranges)]
        if pattern is not None:
            entries = [e for e in entries if fnmatch.fnmatch(e[1], pattern)]
        if last is not None:  # as IPython's get_tail: the cell running now is not one of them
            entries = entries[:-1][-last:]
        for count, source in entries:
            if numbered:
                print("%3d: %s" % (count, source) if "\n" not in source else "%3d:\n%s" % (count, source))
            else:
                print(source)
