"""In, Out, _, __, ___, _N, _i, _iN on the board, kept as IPython's shell keeps them.

IPython updates `_` & co. only for a cell's shown result, never for a silent cell, and leaves them
alone once the user assigned one of them; In/Out/_N only for cells stored in the history.
"""

NAMES = ("In", "Out", "_ih", "_oh", "_", "__", "___", "_i", "_ii", "_iii")


class CellHistory(object):
    """The session's inputs and outputs by execution count, and the values it put in `_` & co."""

    def __init__(self, namespace):
        self.inputs = [""]
        self.raw = {}  # count -> the cell as typed, where it differs from inputs[count]
        self.outputs = {}
        self.unders = ["", "", ""]  # what this history last put in _, __, ___
        namespace.update({"In": self.inputs, "Out": self.outputs, "_ih": self.inputs, "_oh": self.outputs})
        namespace.update({"_": "", "__": "", "___": "", "_i": "", "_ii": "", "_iii": ""})

    def record_input(self, namespace, count, code, raw=None):
        """A cell about to run as execution `count`: In[count], _i, _ii, _iii, _i<count>."""
        if raw is not None and raw != code:
            self.raw[count] = raw
        while len(self.inputs) < count:
            self.inputs.append("")
        if len(self.inputs) == count:
            self.inputs.append(code)
        else:
            self.inputs[count] = code
        namespace["_iii"] = namespace.get("_ii", "")
        namespace["_ii"] = namespace.get("_i", "")
        namespace["_i"] = code
        namespace["_i%d" % count] = code

    def record_output(self, namespace, count, value):
        """A shown result: _, __, ___ (unless the user assigned one), and Out[count], _<count>."""
        if all(namespace.get(name, "") is mine for name, mine in zip(("_", "__", "___"), self.unders)):
            self.unders = [value, self.unders[0], self.unders[1]]
            namespace.update({"_": value, "__": self.unders[1], "___": self.unders[2]})
        if count is not None:
            self.outputs[count] = value
            namespace["_%d" % count] = value

    def flush_outputs(self, namespace):
        """%reset: Out empties and _, __, ___ are gone until the next result, as in IPython; In stays."""
        self.outputs.clear()
        self.unders = ["", "", ""]
        for name in ("_", "__", "___"):
            namespace.pop(name, None)

    def entries(self, raw=True):
        """(count, source) of the stored cells, as typed (raw) or as run."""
        for count in range(1, len(self.inputs)):
            source = self.raw.get(count, self.inputs[count]) if raw else self.inputs[count]
            yield count, source
