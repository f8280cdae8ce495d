"""Atomic file writes: write a temporary file beside the target, fsync, rename. A reader sees the old
file or the new one, never half of one, whatever kills the writer."""

import io
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import torch


def write_with(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """Atomically replace ``path`` with whatever ``write(file)`` streams into it (no copy in memory)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


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
