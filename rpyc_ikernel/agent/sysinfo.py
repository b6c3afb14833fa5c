"""Facts about the board that change over time (uptimes, memory, load), for the kernel's status()."""

import json
import os
import time

from .iostream import process_state
from .session import board_info


def board_status():
    """board_info plus uptimes, memory and load, as JSON."""
    status = json.loads(board_info())
    system_uptime = _system_uptime()
    status["uptime"] = system_uptime
    status["server_uptime"] = _process_uptime(system_uptime)
    status.update(_memory())
    try:
        status["load"] = list(os.getloadavg())
    except (AttributeError, OSError):
        status["load"] = None
    return json.dumps(status)


def _read_text(path):
    try:
        with open(path) as handle:
            return handle.read()
    except (OSError, ValueError):
        return ""


def _system_uptime():
    """Seconds since the board booted (Linux /proc/uptime), or None where that is unknown."""
    fields = _read_text("/proc/uptime").split()
    try:
        return float(fields[0])
    except (IndexError, ValueError):
        return None


def _process_uptime(system_uptime):
    """Seconds this server process has run: /proc/self/stat, else since the agent state was made."""
    stat = _read_text("/proc/self/stat")
    if system_uptime is not None and stat and hasattr(os, "sysconf"):
        try:
            # field 22 (starttime, clock ticks after boot); the command name in field 2 may hold spaces
            start_ticks = int(stat.rsplit(")", 1)[1].split()[19])
            return max(0.0, system_uptime - start_ticks / os.sysconf("SC_CLK_TCK"))
        except (IndexError, ValueError, OSError):
            pass
    return time.time() - process_state().started


def _memory():
    """MemTotal / MemAvailable in bytes from /proc/meminfo (empty where there is none)."""
    found = {}
    for line in _read_text("/proc/meminfo").splitlines():
        name, _, rest = line.partition(":")
        if name in ("MemTotal", "MemAvailable"):
            try:
                found["memory_total" if name == "MemTotal" else "memory_available"] = (
                    int(rest.split()[0]) * 1024
                )
            except (IndexError, ValueError):
                pass
    return found
