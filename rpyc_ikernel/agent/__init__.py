"""The board side of rpyc_ikernel: runs cells like IPython, captures output, completes and inspects.

The kernel sends these modules' sources to the board on connect (``rpyc_ikernel.bootstrap``); there
``boot.py`` serves them from memory as the package ``_rpyc_ikernel_agent`` in the rpyc server's
process. So every module here uses only the standard library and runs on Python 3.7+.

Only the core loads at connect (boot, wire, session, compiling, errors, history, iostream, formatters,
shim); the rest loads on first use. The kernel reaches the agent through the names in
``wire.ENTRY_POINTS``, which this package provides on first access. Importing it has no side effects:
the kernel imports ``wire`` from here.
"""


def __getattr__(name):
    from .wire import ENTRY_POINTS

    if name not in ENTRY_POINTS:
        raise AttributeError("module %r has no attribute %r" % (__name__, name))
    module = __import__(__name__ + "." + ENTRY_POINTS[name], fromlist=["_"])
    return getattr(module, name)
