"""The decoded-image cache beside a folder data set: a directory of ``.npy`` arrays, read memory-mapped.

A directory of plain ``.npy`` files rather than one ``.npz``: an ``.npz`` member can only be read whole into
memory, while an ``.npy`` is memory-mapped, so a re-read holds the images in the page cache (reclaimable,
shared between the jobs of a sweep on one node) instead of in the process's own memory.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

NAMES = ("train_images", "train_labels", "test_images", "test_labels", "mean", "std")


def write_cache(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write the arrays into a temporary directory beside `path`, then rename it to `path`: a reader sees
    the whole cache or none. If another process finished the same cache first, its copy is kept; a damaged
    one there is replaced."""
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f"{path.name}.", suffix=".tmp"))
    try:
        for name in NAMES:
            with open(tmp / f"{name}.npy", "wb") as f:
                np.save(f, arrays[name])
                f.flush()
                os.fsync(f.fileno())
        try:
            os.replace(tmp, path)
        except OSError:
            if read_cache(path) is not None:
                return  # another job finished the same cache first
            shutil.rmtree(path, ignore_errors=True)  # a damaged one is replaced
            os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def read_cache(path: Path) -> dict[str, np.ndarray] | None:
    """The cached arrays, memory-mapped copy-on-write (writable for torch, never written back to the file),
    or None when the cache is missing, incomplete or unreadable (then it is rebuilt)."""
    if not path.is_dir():
        return None
    try:
        arrays = {name: np.load(path / f"{name}.npy", mmap_mode="c", allow_pickle=False) for name in NAMES}
    except (OSError, ValueError):
        return None
    consistent = (
        arrays["train_images"].ndim == 4
        and arrays["train_images"].shape[1:] == arrays["test_images"].shape[1:]
        and len(arrays["train_images"]) == len(arrays["train_labels"])
        and len(arrays["test_images"]) == len(arrays["test_labels"])
    )
    return arrays if consistent else None
