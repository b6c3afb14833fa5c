"""A private network of namespaces for discovery tests: a bridge in its own namespace and one veth
pair per member namespace, 10.77.0.0/24. Multicast stays on the bridge: nothing reaches the host's
interfaces. Needs root and `ip` (iproute2)."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid

SUBNET = "10.77.0"


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True, timeout=20)


def why_not() -> str | None:
    """Why namespaces cannot be made here (None: they can)."""
    if os.geteuid() != 0:
        return "making network namespaces needs root"
    if shutil.which("ip") is None:
        return "`ip` (iproute2) is not installed"
    probe = f"rik-probe-{uuid.uuid4().hex[:6]}"
    try:
        _ip("netns", "add", probe)
    except (subprocess.CalledProcessError, OSError) as exc:
        return f"`ip netns add` failed: {getattr(exc, 'stderr', '') or exc}".strip()
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


class Lan:
    """Namespaces <tag>-0..n-1 on one bridge; member i has address 10.77.0.(i + 10)."""

    def __init__(self, members: int) -> None:
        self.tag = f"rik{uuid.uuid4().hex[:5]}"
        self.hub = f"{self.tag}-hub"
        self.names = [f"{self.tag}-{i}" for i in range(members)]
        self.made: list[str] = []
        try:
            self._make()
        except BaseException:
            self.close()
            raise

    def address(self, member: int) -> str:
        return f"{SUBNET}.{member + 10}"

    def _make(self) -> None:
        _ip("netns", "add", self.hub)
        self.made.append(self.hub)
        hub = ["-n", self.hub]
        _ip(*hub, "link", "add", "br0", "type", "bridge")
        _ip(*hub, "link", "set", "br0", "up")
        for i, name in enumerate(self.names):
            _ip("netns", "add", name)
            self.made.append(name)
            # made inside the hub, so no interface ever appears in the host's namespace
            _ip(*hub, "link", "add", f"p{i}", "type", "veth", "peer", "name", "eth0", "netns", name)
            _ip(*hub, "link", "set", f"p{i}", "master", "br0", "up")
            member = ["-n", name]
            _ip(*member, "addr", "add", f"{self.address(i)}/24", "dev", "eth0")
            _ip(*member, "link", "set", "eth0", "up", "multicast", "on")
            _ip(*member, "link", "set", "lo", "up")
            _ip(*member, "route", "add", "224.0.0.0/4", "dev", "eth0")

    def command(self, member: int, argv: list[str]) -> list[str]:
        """argv run inside member's namespace."""
        return ["ip", "netns", "exec", self.names[member], *argv]

    def close(self) -> None:
        for name in reversed(self.made):
            listed = subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True)
            for pid in listed.stdout.split():
                try:
                    os.kill(int(pid), 9)
                except (OSError, ValueError):
                    pass
            subprocess.run(["ip", "netns", "del", name], capture_output=True)
        self.made.clear()
