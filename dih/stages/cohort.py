"""The cohort cache as a stage of its own: the frozen teacher side's logits for every training image under
every augmentation variant (dih/teacher_side/cohort_cache.py), built once and read by every student of that
cohort. When a stage reads it is dih/teacher_side/cache_policy.py's to say."""

import time

from dih.stages.artifact_io import teacher_side
from dih.stages.runtime import Runtime
from dih.stages.specs import CohortSpec
from dih.teacher_side import cohort_cache
from dih.train import metrics

VERSION = 1  # bump when what this stage computes changes (docs/versions.md)


def build(spec: CohortSpec, upstream: dict, rt: Runtime, work_dir) -> tuple[dict, dict]:
    data = rt.data(spec.data)
    side = teacher_side(upstream, rt, spec.bf16)
    started = time.perf_counter()
    meta = cohort_cache.build(
        side, data.train_images, data.mean, data.std, spec.pad, work_dir, batch_size=rt.eval_batch_size
    )
    return meta, {"shape": meta["shape"], metrics.TOTAL_SECONDS: round(time.perf_counter() - started, 1)}
