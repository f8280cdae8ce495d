"""The one exception type for mistakes a user can fix, and how every entry point answers one: a single
``error:`` line on stderr and exit status 2, never a traceback (``fail`` for run.py, ``command`` for each
``python -m dih.X``)."""

import functools
import sys
from collections.abc import Callable


class UserError(Exception):
    """A problem the user can fix (a bad name, a missing data set, a corrupt file).

    run.py prints the message as one sentence and exits non-zero, with no traceback; the message must
    say what is wrong and how to fix it.
    """


def unknown_name(kind: str, name: str, known) -> UserError:
    """The error for a name that is not among the known ones, listing them."""
    return UserError(f"Unknown {kind} '{name}'; choose one of: {', '.join(sorted(known))}.")


def fail(exc: UserError) -> None:
    """The one line a user gets for a UserError, and exit status 2."""
    print(f"error: {exc}", file=sys.stderr)
    sys.exit(2)


def command(main: Callable[[list[str] | None], int]) -> Callable[[list[str] | None], int]:
    """A command's ``main(argv) -> status``, answering a UserError raised anywhere in it with its one line
    on stderr and status 2."""

    @functools.wraps(main)
    def answered(argv: list[str] | None = None) -> int:
        try:
            return main(argv)
        except UserError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2

    return answered


def run_command(main: Callable[[list[str] | None], int]) -> None:
    """What a ``__main__`` does: run ``main`` on the command line and exit with its status."""
    sys.exit(main(sys.argv[1:]))
