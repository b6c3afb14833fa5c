"""Our board server in a process that cannot import IPython, as on most boards.

The test environment has IPython installed; this hides it from imports so the agent's own
`IPython.display` stand-in is what board code gets. Arguments are the server's (--host, --port).
"""

import sys
from importlib.machinery import PathFinder


class _PathFinderWithoutIPython:
    """sys.meta_path's PathFinder, except that it never finds IPython."""

    @staticmethod
    def find_spec(name, path=None, target=None):
        if name == "IPython" or name.startswith("IPython."):
            return None
        return PathFinder.find_spec(name, path, target)

    @staticmethod
    def invalidate_caches():
        PathFinder.invalidate_caches()


sys.meta_path[:] = [_PathFinderWithoutIPython if f is PathFinder else f for f in sys.meta_path]

if __name__ == "__main__":
    from rpyc_ikernel.server import main

    sys.exit(main())
