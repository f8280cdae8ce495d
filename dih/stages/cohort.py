"""The cohort cache as a stage of its own: the frozen teacher side's logits for every training image under
every augmentation variant (dih/cohort_cache.py), built once and read by every student of that cohort.
Its policy (when a stage reads the cache rather than running the teacher) lives here and nowhere else."""

import time

from dih import cohort_cache
from dih.losses import LOGITS_ONLY
from dih.runtime import Runtime
from dih.specs import CohortSpec
from dih.stages.artifact_io import teacher_side

VERSION = 1  # bump when what this stage computes changes (docs/versions.md)
PAD = 4  # the loader's crop padding: the cache holds one entry per crop offset and flip


def wanted(setting: bool | str, loss_name: str, epochs: int) -> bool:
    """Whether a stage with this loss reads the cache (``teacher_side.cache``): never for a loss that needs
    the teacher's features; with ``auto``, when the stage runs at least as many epochs as there are
    variants, where building the cache costs less than running the teacher live even for this one stage
    (and every later stage of the same cohort reuses it)."""
    applies = loss_name in LOGITS_ONLY
    if setting == "auto":
        return applies and epochs >= cohort_cache.num_variants(PAD)
    return applies and bool(setting)


def build(spec: CohortSpec, upstream: dict, rt: Runtime, work_dir) -> tuple[dict, dict]:
    data = rt.data(spec.data)
    side = teacher_side(upstream, rt, spec.bf16)
    started = time.perf_counter()
    meta = cohort_cache.build(
        side, data.train_images, data.mean, data.std, spec.pad, work_dir, batch_size=rt.eval_batch_size
    )
    return meta, {"shape": meta["shape"], "time/total_s": round(time.perf_counter() - started, 1)}
