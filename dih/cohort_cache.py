"""The cohort-output cache: the frozen teacher side's logits for every training image under every
augmentation variant, computed once and read back by every student that learns from that cohort.

A training image's augmentation is a crop offset (dy, dx) in [-pad, pad]^2 and a flip: (2 pad + 1)^2 * 2
variants (162 for pad 4), whatever the image size. The cache is an ``.npy`` array of float16 logits shaped
``[images, variants, classifiers, classes]``, memory-mapped, stored in the artifact store under its own
key; a student stage then looks up exactly the variant its loader drew instead of running the teacher.
"""

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from dih import atomic
from dih.artifacts import FILES, Artifact
from dih.data.loader import Batch, augment, normalize
from dih.errors import UserError
from dih.models.teacher_side import TeacherOutput, TeacherSide

log = logging.getLogger(__name__)

CACHE_FILE = "cohort.npy"
VERSION = 1  # bump when the layout or the values of the cache change (docs/versions.md)


def num_variants(pad: int) -> int:
    return (2 * pad + 1) ** 2 * 2


def variant_index(shifts: Tensor, flips: Tensor, pad: int) -> Tensor:
    """The variant number of each sample's augmentation: crop row, crop column, then flip."""
    side = 2 * pad + 1
    return ((shifts[:, 0] + pad) * side + (shifts[:, 1] + pad)) * 2 + flips.long()


def all_variants(pad: int) -> tuple[Tensor, Tensor]:
    """``(shifts [V, 2], flips [V])`` listing every variant in ``variant_index`` order."""
    offsets = torch.arange(-pad, pad + 1)
    dy, dx, flip = torch.meshgrid(offsets, offsets, torch.tensor([0, 1]), indexing="ij")
    return torch.stack([dy.flatten(), dx.flatten()], 1), flip.flatten().bool()


def cache_bytes(num_images: int, pad: int, cohort_size: int, num_classes: int) -> int:
    return num_images * num_variants(pad) * cohort_size * num_classes * 2


@torch.no_grad()
def build(
    side: TeacherSide,
    images_u8: Tensor,
    mean,
    std,
    pad: int,
    work_dir: Path,
    *,
    batch_size: int = 1024,
    images_per_chunk: int = 32,
) -> dict:
    """Write the cache into ``work_dir/files/``, resuming after the last finished chunk if killed."""
    device = next(side.parameters()).device
    shifts, flips = all_variants(pad)
    variants = len(flips)
    probe = side(normalize(images_u8[:1].to(device), mean, std))
    shape = (len(images_u8), variants, len(probe.cohort), probe.logits.shape[1])
    size = int(np.prod(shape)) * 2
    (work_dir / FILES).mkdir(parents=True, exist_ok=True)
    path, progress = work_dir / FILES / CACHE_FILE, work_dir / "progress.json"
    done = json.loads(progress.read_text())["images_done"] if progress.exists() and path.exists() else 0
    if not done:
        free = shutil.disk_usage(work_dir).free
        if free < size * 1.05:
            raise UserError(
                f"The cohort cache needs {size / 2**30:.1f} GiB but {work_dir} has {free / 2**30:.1f} "
                "GiB free; free some space, move artifacts.root, or set teacher_side.cache=false."
            )
        log.info("building the cohort cache: %s float16 = %.2f GiB", "x".join(map(str, shape)), size / 2**30)
    array = np.lib.format.open_memmap(path, mode="r+" if done else "w+", dtype=np.float16, shape=shape)
    for start in range(done, shape[0], images_per_chunk):
        chunk = images_u8[start : start + images_per_chunk].to(device)
        n = len(chunk)
        views = augment(chunk.repeat_interleave(variants, 0), shifts.repeat(n, 1), flips.repeat(n), pad)
        logits = [torch.stack(side(normalize(part, mean, std)).cohort, 1) for part in views.split(batch_size)]
        array[start : start + n] = torch.cat(logits).view(n, variants, *shape[2:]).half().cpu().numpy()
        array.flush()
        atomic.write_json(progress, {"images_done": start + n})
    del array
    return {"shape": list(shape), "pad": pad}


class CohortCache:
    """Reads the cohort's logits for a batch's exact images and augmentations from a cache artifact."""

    def __init__(self, artifact: Artifact, device: torch.device):
        self.array = np.load(artifact.path / CACHE_FILE, mmap_mode="r")
        self.pad = artifact.load()["pad"]
        self.device = device

    def __call__(self, batch: Batch) -> TeacherOutput:
        index = batch.index.cpu().numpy()
        variant = variant_index(batch.shifts, batch.flips, self.pad).cpu().numpy()
        logits = torch.from_numpy(np.ascontiguousarray(self.array[index, variant])).to(self.device).float()
        cohort = list(logits.unbind(1))
        return TeacherOutput(logits=cohort[-1], cohort=cohort, features={})
