"""The one exception type for mistakes a user can fix."""


class UserError(Exception):
    """A problem the user can fix (a bad name, a missing data set, a corrupt file).

    run.py prints the message as one sentence and exits non-zero, with no traceback; the message must
    say what is wrong and how to fix it.
    """


def unknown_name(kind: str, name: str, known) -> UserError:
    """The error for a name that is not among the known ones, listing them."""
    return UserError(f"Unknown {kind} '{name}'; choose one of: {', '.join(sorted(known))}.")
