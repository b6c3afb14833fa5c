"""Run inside the browsing namespace of test_discovery.py: a real kernel that finds boards by name.

argv[1]: JSON {"pids": {name: pid}}. Prints one JSON line: what each cell said.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from helpers import KernelSession  # noqa: E402


def main() -> None:
    session = KernelSession.start()
    outcome = {}
    try:
        cells = {
            "table": "# exec(self.boards())",
            "by_name": '# exec(self.connect_remote("pi-2", allow_open=True))\nimport os\nos.getpid()',
            "by_local": '# exec(self.connect_remote("pi-0.local"))\nimport os\nos.getpid()',
            "nothing": '# exec(self.connect_remote("nothing-here"))\n1',
            "refuses": '# exec(self.connect_remote("junk"))\n1',
            "still": "os.getpid()",
        }
        for key, code in cells.items():
            cell = session.run(code, timeout=60)
            outcome[key] = {
                "status": cell.status,
                "result": (cell.result or {}).get("text/plain"),
                "stream": cell.stream(),
                "evalue": cell.reply.get("evalue"),
            }
    finally:
        session.stop()
    print(json.dumps(outcome), flush=True)


if __name__ == "__main__":
    main()
