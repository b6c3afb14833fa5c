"""The kernel's questions about a session's namespace: completion, inspection, user_expressions.

Loaded on the first question (completer.py and oinspect.py on the first of their kind). Nothing here
keeps state: each answer is JSON made from the namespace as it is.
"""

import json
import sys

from .errors import format_error
from .formatters import format_bundle


def complete(namespace, code, cursor_pos):
    """complete_reply content, as JSON."""
    from .completer import complete as completions

    return json.dumps(completions(namespace, code, cursor_pos))


def inspect(namespace, code, cursor_pos, detail_level=0):
    """inspect_reply content, as JSON."""
    from .oinspect import inspect_object

    return json.dumps(inspect_object(namespace, code, cursor_pos, detail_level))


def evaluate(namespace, expressions):
    """user_expressions of an execute_request (JSON {name: source}): each evaluated in the namespace,
    as a bundle or an error."""
    results = {}
    for name, source in json.loads(expressions).items():
        try:
            data, metadata = format_bundle(eval(source, namespace))
            results[name] = {"status": "ok", "data": data, "metadata": metadata}
        except Exception:
            exc_type, exc, tb = sys.exc_info()
            results[name] = format_error(exc_type, exc, None)
    return json.dumps(results)
