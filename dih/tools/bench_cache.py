"""The cohort caches of ``python -m dih.bench``: a full-size one for the read row, filled with stand-in
values (reading costs the same whatever the logits are, and filling it with a real teacher would take
hours on a CPU), and a small real build, timed, for the build row."""

import time
from pathlib import Path

import numpy as np
import torch

from dih.data.loader import DeviceLoader
from dih.store.artifacts import FILES, ArtifactStore
from dih.teacher_side import cohort_cache
from dih.teacher_side.cache_policy import PAD
from dih.teacher_side.cohort_cache import CACHE_FILE, CohortCache
from dih.teacher_side.side import TeacherSide

# CIFAR-100's training split (50,000 images less the 10% validation hold-out): the real cache's rows.
REAL_IMAGES = 45_000
# On a CPU the read row's cache is smaller, 8,192 images: 1.06 GB with res110's DIH cohort at 100 classes,
# some 30x any CPU's last-level cache, so each row is a memory read as in the real one, and the bench
# stays far from the memory of a shared development machine. A GPU holds the real size easily.
CPU_IMAGES = 8_192


def default_images(device: torch.device) -> int:
    return REAL_IMAGES if device.type == "cuda" else CPU_IMAGES


def stand_in_cache(root: Path, images: int, cohort: int, classes: int, device: torch.device) -> CohortCache:
    """A cache of ``images`` x 162 variants x ``cohort`` classifiers x ``classes`` float16 values, stored as
    the pipeline stores one and opened as a student stage opens it (on the device where it fits)."""
    shape = (images, cohort_cache.num_variants(PAD), cohort, classes)

    def build(work: Path) -> tuple[dict, dict]:
        (work / FILES).mkdir(parents=True, exist_ok=True)
        array = np.lib.format.open_memmap(work / FILES / CACHE_FILE, mode="w+", dtype=np.float16, shape=shape)
        g = torch.Generator().manual_seed(0)
        for start in range(0, images, 512):  # every page written: no sparse file that reads as zeros
            part = array[start : start + 512]
            part[:] = (torch.randn(part.shape, generator=g) * 3).half().numpy()
        array.flush()
        del array
        return {"shape": list(shape), "pad": PAD}, {}

    artifact, _ = ArtifactStore(root).get_or_build("cohort-bench-read", {}, build)
    return CohortCache(artifact, device)


def timed_build(side: TeacherSide, images_u8: torch.Tensor, mean, std, root: Path, batch_size: int) -> float:
    """Build a real cache of ``images_u8`` with ``side`` into ``root``; teacher-side forwards (images x
    variants) per second at the build's ``batch_size``, the device synchronised before the clock stops."""
    device = next(side.parameters()).device
    sync = torch.cuda.synchronize if device.type == "cuda" else lambda: None
    sync()
    started = time.perf_counter()
    cohort_cache.build(side, images_u8, mean, std, PAD, root / "build", batch_size=batch_size)
    sync()
    return len(images_u8) * cohort_cache.num_variants(PAD) / (time.perf_counter() - started)


def cache_loader(data, images: int, batch_size: int, device: torch.device) -> DeviceLoader:
    """A training loader over ``images`` rows, the training images of ``data`` (an ``ImageData``) repeated
    to that count, so the read row's cache is read at random across its whole size, as in a real epoch."""
    copies = -(-images // len(data.train_labels))
    train, labels = (
        data.train_images.repeat(copies, 1, 1, 1)[:images],
        data.train_labels.repeat(copies)[:images],
    )
    return DeviceLoader(
        train, labels, batch_size=batch_size, mean=data.mean, std=data.std, device=device, train=True
    )
