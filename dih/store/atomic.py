"""Atomic file writes: write a temporary file beside the target, fsync, rename. A reader sees the old
file or the new one, never half of one, whatever kills the writer.

The file gets the mode a plain ``open`` would give it (0666 less the umask), so a store that a group
shares (umask 002) stays readable to the group; ``tempfile.mkstemp`` would make every file 0600."""

import io
import json
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import torch


def write_with(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """Atomically replace ``path`` with whatever ``write(file)`` streams into it (no copy in memory)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _create_temp(path)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.filename is None:  # a failed write(): name the file it was for
            raise OSError(exc.errno, exc.strerror, str(path)) from exc
        raise
    _fsync_dir(path.parent)


def _create_temp(path: Path) -> tuple[int, Path]:
    """A new, empty temporary file beside ``path``, created as ``open`` creates files (the umask applies)."""
    while True:
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666), tmp
        except FileExistsError:
            continue


def write_bytes(path: Path, data: bytes) -> None:
    """Atomically replace ``path`` with ``data``."""
    write_with(path, lambda f: f.write(data))


def write_json(path: Path, obj) -> None:
    """Atomically write ``obj`` as indented JSON."""
    write_bytes(path, (json.dumps(obj, indent=2, default=str) + "\n").encode())


def torch_save(path: Path, obj) -> bytes:
    """Atomically ``torch.save`` ``obj``; returns the bytes written (for checksums)."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    data = buffer.getvalue()
    write_bytes(path, data)
    return data


def _fsync_dir(directory: Path) -> None:
    # The rename itself must reach the disk too, or a crash can lose a file that was "written".
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
