"""The one exception type for mistakes a user can fix."""

import errno
from pathlib import Path


class UserError(Exception):
    """A problem the user can fix (a bad name, a missing data set, a corrupt file).

    run.py prints the message as one sentence and exits non-zero, with no traceback; the message must
    say what is wrong and how to fix it.
    """


def unknown_name(kind: str, name: str, known) -> UserError:
    """The error for a name that is not among the known ones, listing them."""
    return UserError(f"Unknown {kind} '{name}'; choose one of: {', '.join(sorted(known))}.")


def cannot_write(path: Path, err: OSError, flag: str) -> UserError:
    """The error for an output a command cannot write where the user pointed it (read-only, no permission,
    a full disk), naming the path and the flag that moves it."""
    reason = err.strerror or type(err).__name__
    free = "free space there or " if err.errno == errno.ENOSPC else ""
    return UserError(f"Cannot write {path} ({reason}); {free}pass {flag} a place you can write to.")
