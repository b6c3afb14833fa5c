"""The README's plain board: rpyc's classic server and nothing else (no rpyc_ikernel on the board).

    ThreadedServer(SlaveService, hostname="0.0.0.0", port=18812, reuse_addr=True).start()

Tests run it on 127.0.0.1 with --port; --classic uses rpyc's full-duplex ClassicService, as the
rpyc_classic script does.
"""

import sys

from rpyc import SlaveService
from rpyc.utils.classic import SlaveService as ClassicService
from rpyc.utils.server import ThreadedServer

if __name__ == "__main__":
    port = int(sys.argv[sys.argv.index("--port") + 1])
    service = ClassicService if "--classic" in sys.argv else SlaveService
    ThreadedServer(service, hostname="127.0.0.1", port=port, reuse_addr=True).start()
