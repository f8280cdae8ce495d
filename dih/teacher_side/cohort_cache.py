"""The cohort-output cache: the frozen teacher side's logits for every training image under every
augmentation variant, computed once and read back by every student that learns from that cohort.

A training image's augmentation is a crop offset (dy, dx) in [-pad, pad]^2 and a flip: (2 pad + 1)^2 * 2
variants (162 for pad 4), whatever the image size. The cache is an ``.npy`` array of float16 logits shaped
``[images, variants, classifiers, classes]``, memory-mapped, stored in the artifact store under its own
key; a student stage then looks up exactly the variant its loader drew instead of running the teacher.
"""

import json
import logging
import os
import shutil
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from dih.data.loader import Batch, EpochPlan, augment, normalize
from dih.device import free_bytes, host_available_bytes
from dih.errors import UserError
from dih.store import atomic
from dih.store.artifacts import FILES, Artifact
from dih.store.fs_errors import NO_SPACE, human_bytes
from dih.teacher_side.side import TeacherOutput, TeacherSide

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
            raise _no_space(work_dir, size, free)
        log.info("building the cohort cache: %s float16 = %s", "x".join(map(str, shape)), human_bytes(size))
    array = _open_reserved(path, shape, resume=bool(done))
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


def _open_reserved(path: Path, shape: tuple[int, ...], *, resume: bool) -> np.memmap:
    """The cache file memory-mapped, its whole size allocated on disk first. A write into a page of a
    sparse mapped file that the disk has no room for kills the process with SIGBUS, without a word;
    allocating up front turns a disk that filled since the check (a sweep's other cache builds) into an
    ENOSPC here, and a UserError."""
    try:
        array = np.lib.format.open_memmap(path, mode="r+" if resume else "w+", dtype=np.float16, shape=shape)
        with open(path, "r+b") as f:
            os.posix_fallocate(f.fileno(), 0, os.fstat(f.fileno()).st_size)
    except OSError as exc:
        if exc.errno not in NO_SPACE:
            raise
        if not resume:
            path.unlink(missing_ok=True)  # nothing in it yet; don't hold the space
        size = int(np.prod(shape)) * 2
        raise _no_space(path.parent, size, shutil.disk_usage(path.parent).free) from None
    return array


def _no_space(directory: Path, size: int, free: int) -> UserError:
    return UserError(
        f"The cohort cache needs {human_bytes(size)} but {directory} has {human_bytes(free)} free; free some "
        "space, move artifacts.root, or set teacher_side.cache=false."
    )


class CohortCache:
    """Reads the cohort's logits for a batch's exact images and augmentations from a cache artifact.

    Where the whole array fits in ``device_share`` of the device's free memory (the runtime setting
    ``teacher_side.cache_device_share``), it is loaded there once as a float16 tensor and each batch's rows
    are gathered on the device with the batch's own index tensors: no host-device synchronisation in the
    step. Otherwise it is held in host memory (pinned where CUDA is available; memory-mapped when it does
    not fit in the host's memory either) and gathered there per batch, the next batch's rows ahead in a
    worker thread, and copied to the device without blocking. Either way the rows are the stored float16
    values, returned as float32.
    """

    def __init__(
        self, artifact: Artifact, device: torch.device, *, device_share: float = 0.5, chunk: int = 256
    ):
        # copy-on-write mapping: writable for torch.from_numpy, never written back (the file stays verified)
        mapped = np.load(artifact.path / CACHE_FILE, mmap_mode="c")
        self.pad = artifact.load()["pad"]
        self.device = torch.device(device)
        self.shape = tuple(mapped.shape)
        size = int(mapped.nbytes)
        self.on_device = size <= device_share * free_bytes(self.device)
        if self.on_device:
            self.table = _load(mapped, self.device, pin=False, chunk=chunk)
        else:
            pin = torch.cuda.is_available()
            in_host = self.device.type != "cpu" and size <= device_share * (host_available_bytes() or 0)
            self.table = (
                _load(mapped, torch.device("cpu"), pin=pin, chunk=chunk)
                if in_host
                else torch.from_numpy(mapped)
            )
            self._rows = self.table.view(-1, *self.shape[2:])  # [images x variants, classifiers, classes]
            self._pin = pin
            self._ahead: tuple[EpochPlan, int, Future] | None = None  # the next batch's rows, being gathered
            self._worker: ThreadPoolExecutor | None = None
        log.info(
            "cohort cache %s float16 (%s) %s",
            "x".join(map(str, self.shape)),
            human_bytes(size),
            f"on {self.device}" if self.on_device else "in host memory, gathered per batch",
        )

    def __call__(self, batch: Batch) -> TeacherOutput:
        if self.on_device:
            variant = variant_index(batch.shifts, batch.flips, self.pad)
            logits = self.table[batch.index, variant].float()
        else:
            logits = self._gather_on_host(batch).to(self.device, non_blocking=True).float()
        cohort = list(logits.unbind(1))
        return TeacherOutput(logits=cohort[-1], cohort=cohort, features={})

    def _gather_on_host(self, batch: Batch) -> Tensor:
        """The batch's rows, gathered on the host (into pinned memory where CUDA is available). A loader's
        batch carries its epoch's draws on the host: its rows were gathered ahead, in a worker thread, while
        the previous step ran, and the next batch's are started now, with no read-back from the device. A
        batch without them (made elsewhere) reads its index back: one synchronisation."""
        plan = batch.plan
        if plan is None:
            return self._gather(batch.index.cpu(), batch.shifts.cpu(), batch.flips.cpu())
        ahead, self._ahead = self._ahead, None
        if ahead is not None and ahead[0] is plan and ahead[1] == batch.start:
            rows = ahead[2].result()
        else:
            rows = self._gather_planned(plan, batch.start)
        following = batch.start + plan.batch_size
        if following < len(plan.order):
            if self._worker is None:
                self._worker = ThreadPoolExecutor(1, thread_name_prefix="cohort-cache")
            self._ahead = (plan, following, self._worker.submit(self._gather_planned, plan, following))
        return rows

    def _gather_planned(self, plan: EpochPlan, start: int) -> Tensor:
        end = start + plan.batch_size
        return self._gather(plan.order[start:end], plan.shifts[start:end], plan.flips[start:end])

    def _gather(self, index: Tensor, shifts: Tensor, flips: Tensor) -> Tensor:
        """Rows ``[index, variant]`` of the host table, host tensors in. Each gather gets its own pinned
        block; the caching host allocator does not hand it out again before its copy to the device is done."""
        rows = index * self.shape[1] + variant_index(shifts, flips, self.pad)
        out = torch.empty(len(rows), *self.shape[2:], dtype=torch.float16, pin_memory=self._pin)
        return torch.index_select(self._rows, 0, rows, out=out)


def _load(mapped: np.ndarray, device: torch.device, *, pin: bool, chunk: int) -> Tensor:
    """The whole array as a float16 tensor on `device` (pinned if asked), read from disk in chunks of
    images, so no second whole copy is ever held on the host."""
    table = torch.empty(mapped.shape, dtype=torch.float16, device=device, pin_memory=pin)
    for start in range(0, len(mapped), chunk):
        table[start : start + chunk].copy_(
            torch.from_numpy(np.ascontiguousarray(mapped[start : start + chunk]))
        )
    return table
