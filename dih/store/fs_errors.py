"""File-system errors a user can fix, as one sentence: no space left, a read-only file system, no
permission, a file where a directory should be. Each names the path and the setting that moves it
(``artifacts.root`` for the store, ``hydra.run.dir`` for a run's directory)."""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Mapping
from pathlib import Path

from dih.errors import UserError

NO_SPACE = (errno.ENOSPC, errno.EDQUOT)
# the errors a user fixes by freeing space or by pointing a setting elsewhere; anything else stays a bug
USER_FIXABLE = (*NO_SPACE, errno.EROFS, errno.EACCES, errno.EPERM, errno.EEXIST, errno.ENOTDIR)


def user_error(exc: BaseException, places: Mapping[Path, str]) -> UserError | None:
    """The sentence for ``exc`` when the user can fix it and it concerns one of ``places`` (a directory
    and the setting that moves it); None for any other error. An error with no file named (a failed
    write) is taken as one of theirs only when it is a full disk."""
    if not isinstance(exc, OSError) or exc.errno not in USER_FIXABLE:
        return None
    if exc.filename is None:
        if exc.errno not in NO_SPACE:
            return None
        where = " or ".join(str(p) for p in places)
        setting = " / ".join(places.values())
    else:
        where = Path(os.fsdecode(exc.filename)).absolute()
        setting = next((s for p, s in places.items() if _on_the_way(where, Path(p).absolute())), None)
        if setting is None:
            return None
    return _sentence(exc.errno, where, setting)


def _on_the_way(path: Path, place: Path) -> bool:
    """Whether ``path`` is ``place``, inside it, or one of the directories on the way to it."""
    return path.is_relative_to(place) or place.is_relative_to(path)


def _sentence(code: int, where, setting: str) -> UserError:
    if code in NO_SPACE:
        return UserError(
            f"No space left on the device (or over quota) writing {where}; free some space, or point "
            f"{setting} at another file system."
        )
    if code == errno.EROFS:
        return UserError(f"{where} is on a read-only file system; point {setting} at a writable place.")
    if code in (errno.EACCES, errno.EPERM):
        return UserError(
            f"No permission to use {where}; ask its owner for access (a group-shared store needs "
            f"chmod -R g+rwX and umask 002), or point {setting} at a place of your own."
        )
    return UserError(
        f"{_file_in_the_way(Path(where))} is a file, not a directory; move that file, or point {setting} "
        "at a directory."
    )


def _file_in_the_way(path: Path) -> Path:
    """The first existing non-directory on the way to ``path`` (``path`` itself when none is found)."""
    for part in reversed([path, *path.parents]):
        if part.exists() and not part.is_dir():
            return part
    return path


def check_creatable(directory: Path, setting: str, *, min_free: int = 1 << 20) -> None:
    """Refuse, before anything is written, a directory that cannot be created or written: a file on the
    way to it, a read-only file system, no write permission, or less than ``min_free`` bytes free."""
    directory = Path(directory).absolute()
    blocker = _file_in_the_way(directory)
    if blocker.exists() and not blocker.is_dir():
        raise _sentence(errno.EEXIST, blocker, setting)
    existing = next(p for p in (directory, *directory.parents) if p.exists())
    if not os.access(existing, os.W_OK | os.X_OK, effective_ids=os.access in os.supports_effective_ids):
        raise _sentence(errno.EROFS if _read_only(existing) else errno.EACCES, existing, setting)
    free = shutil.disk_usage(existing).free
    if free < min_free:
        raise UserError(
            f"{existing} has only {human_bytes(free)} free, too little to write {directory}; free some "
            f"space, or point {setting} at another file system."
        )


def _read_only(path: Path) -> bool:
    return bool(os.statvfs(path).f_flag & os.ST_RDONLY)


def human_bytes(n: float) -> str:
    """A size in the unit that reads best: 512 B, 3.2 KiB, 1.5 MiB, 2.0 GiB, 1.1 TiB."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def cannot_write(path: Path, err: OSError, flag: str) -> UserError:
    """The error for an output a command cannot write where the user pointed it (read-only, no permission,
    a full disk), naming the path and the flag that moves it."""
    reason = err.strerror or type(err).__name__
    free = "free space there or " if err.errno in NO_SPACE else ""
    return UserError(f"Cannot write {path} ({reason}); {free}pass {flag} a place you can write to.")
