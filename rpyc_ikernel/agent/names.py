"""Objects of the board namespace reached by name, without running arbitrary code, within a time budget.

Shared by completion, inspection and the magics that look objects up (`obj?`, %pdoc, ...). A dotted
name is resolved by attribute look-ups only; user code those look-ups run (a property, a
__getattr__) gets a time budget, so a hanging object gives partial answers, never a stuck board.
"""

import builtins
import threading
import time

BUDGET = 0.2  # seconds user code may take during one request; then partial results
MISSING = object()  # what resolve() returns for a name that is not there


def resolve(namespace, dotted):
    """Look up a dotted name without evaluating arbitrary code (attributes only); MISSING if absent."""
    parts = dotted.split(".")
    if parts[0] in namespace:
        obj = namespace[parts[0]]
    elif hasattr(builtins, parts[0]):
        obj = getattr(builtins, parts[0])
    else:
        return MISSING
    for part in parts[1:]:
        try:
            obj = getattr(obj, part)
        except Exception:
            return MISSING
    return obj


MAX_STUCK = 4  # helper threads still stuck in user code beyond which no more are started
_stuck = []  # the helper threads that outlived their budget


class Budget(object):
    """The time user code may still take in this request; calls beyond it give their default.

    A call that outlives the budget keeps its thread until the user code returns; with MAX_STUCK
    of those alive, completion stops calling user code (repeated Tabs on a hanging object must not
    pile up threads on a small board).
    """

    def __init__(self, seconds=BUDGET):
        self.deadline = time.monotonic() + seconds

    def call(self, function, default, *args):
        """function(*args) in a helper thread, waited for only until the deadline."""
        left = self.deadline - time.monotonic()
        _stuck[:] = [t for t in _stuck if t.is_alive()]
        if left <= 0 or len(_stuck) >= MAX_STUCK:
            return default
        box = []

        def run():
            try:
                box.append(function(*args))
            except BaseException:
                pass

        worker = threading.Thread(target=run, name="rpyc_ikernel completion", daemon=True)
        worker.start()
        worker.join(left)
        if worker.is_alive():
            _stuck.append(worker)
        return box[0] if box else default
