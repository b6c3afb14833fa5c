"""The text of ``# exec(self.status())``: which board, what it runs, how well the link works.

Kept apart from kernel.py so the kernel stays the Jupyter side only; this module only formats.
"""

from __future__ import annotations

from .transfer import format_size


def status_lines(
    address: str, tunnel: str | None, facts: dict | None, error: str | None, security: str
) -> list:
    """(label, text) rows; facts come from Board.status(), error when the board could not answer.

    security is Board.security: what the last handshake established ("token (...)", ", TLS ...").
    """
    rows = [("board", address)]
    if tunnel:
        rows.append(("tunnel", tunnel))
    if facts is None:
        rows.append(("state", f"not connected: {error}"))
    else:
        rows.append(("state", "connected"))
        platform = f"{facts.get('platform', '?')} ({facts.get('machine', '?')})"
        uptimes = f"board {_duration(facts.get('uptime'))}, server {_duration(facts.get('server_uptime'))}"
        rows.append(("python", _python(facts)))
        rows.append(("platform", f"{platform}, host {facts.get('hostname', '?')}"))
        rows.append(("uptime", uptimes))
        if facts.get("memory_total"):
            available = format_size(facts.get("memory_available") or 0)
            rows.append(("memory", f"{available} available of {format_size(facts['memory_total'])}"))
        if facts.get("load"):
            rows.append(("load", " ".join(f"{value:.2f}" for value in facts["load"])))
        rows.append(("latency", f"{facts['latency'] * 1000:.2f} ms (median round trip to the agent)"))
    auth, _, tls = security.partition(", TLS")
    if auth.startswith("no authentication"):
        auth = "none: anyone who can reach the board's port can run code"
    rows.append(("auth", auth))
    if tls:
        rows.append(("tls", "on" + tls))
    elif tunnel and tunnel.startswith("adb"):
        rows.append(("tls", "off (the link is the USB cable; the forward listens on 127.0.0.1 only)"))
    else:
        rows.append(
            (
                "tls",
                "off: plain TCP; anyone on the network path can read the link and, after the token"
                " check, take it over (off a trusted network, give the pairing string TOKEN@sha256:... the"
                " board server prints)",
            )
        )
    return rows


def format_rows(rows: list) -> str:
    """Aligned 'label  text' lines, the same layout whether or not the board answered."""
    width = max(len("platform"), *(len(label) for label, _ in rows))
    return "\n".join(f"{label:<{width}}  {text}" for label, text in rows)


def _python(facts: dict) -> str:
    runner = (
        "cells on the server's main thread"
        if facts.get("main_thread_executor")
        else "cells in server threads (plain rpyc server: interrupt is best effort)"
    )
    python = f"{facts.get('implementation', 'Python')} {facts.get('python', '?')}"
    return f"{python}, pid {facts.get('pid', '?')}, {runner}"


def _duration(seconds) -> str:
    """3723 -> '1:02:03'; 200000 -> '2 d 07:33:20'; None -> 'unknown'."""
    if seconds is None:
        return "unknown"
    seconds = int(seconds)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    clock = f"{hours}:{minutes:02d}:{seconds:02d}"
    return f"{days} d {clock}" if days else clock
