"""File names for completion inside a string, and commands on the board's PATH for `!cmd`."""

import os

MAX_ENTRIES = 2000  # a huge directory gives its first entries only


def path_matches(text):
    """Entries of the board's filesystem that complete `text` (relative to the cwd; `~` expanded).

    A directory ends in '/', as IPython shows it. The matches keep `text`'s own spelling of the part
    before the last '/'.
    """
    head, _, tail = text.rpartition("/")
    if "/" in text:
        directory = os.path.expanduser(head + "/") if head else "/"
        prefix = head + "/"
    else:
        directory, prefix = ".", ""
    try:
        entries = os.listdir(directory)
    except OSError:
        return []
    matches = []
    for entry in sorted(entries)[:MAX_ENTRIES]:
        if not entry.startswith(tail) or (entry.startswith(".") and not tail.startswith(".")):
            continue
        full = os.path.join(directory, entry)
        matches.append(prefix + entry + ("/" if os.path.isdir(full) else ""))
    return matches


def command_matches(word):
    """Programs on the board's PATH starting with word (for `!cmd`)."""
    found = set()
    for directory in os.environ.get("PATH", "").split(os.pathsep):
        try:
            entries = os.listdir(directory or ".")
        except OSError:
            continue
        for entry in entries:
            if entry.startswith(word) and os.access(os.path.join(directory, entry), os.X_OK):
                found.add(entry)
    return sorted(found)
