"""Distillation: a model (and any parameters of its loss) learns with the method's loss from the frozen
teacher side, from that side's cohort cache, or alone (method=ce). The student of every method, and TAKD's
assistant (distilled from the teacher the same way), build here."""

from dih.losses import build_loss
from dih.losses.context import loss_context
from dih.models import build_model
from dih.stages.artifact_io import model_payload, teacher_side
from dih.stages.runtime import Runtime
from dih.stages.specs import DistillSpec
from dih.teacher_side.cohort_cache import CohortCache
from dih.teacher_side.softness import measure_targets
from dih.train.determinism import seed_everything
from dih.train.engine import Task

VERSION = 1  # bump when what this stage computes changes (docs/versions.md)


def build(spec: DistillSpec, upstream: dict, rt: Runtime, work_dir) -> tuple[dict, dict]:
    data = rt.data(spec.data)
    side = teacher_side(upstream, rt, spec.bf16)
    cache = (
        CohortCache(upstream["cohort"], rt.device, device_share=rt.cache_device_share)
        if "cohort" in upstream
        else None
    )
    # after loading: a student's initial weights (and its loss's) are the same whatever teaches it, live or
    # from the cache
    seed_everything(spec.seed)
    model = build_model(spec.model, data.num_classes).to(rt.device)
    if "init" in upstream:
        model.load_state_dict(upstream["init"].load()["model"])
    loss = build_loss(spec.loss, loss_context(data, model, side, rt.device, spec.recipe.epochs)).to(rt.device)
    summary = rt.fit(Task(model, loss, side, cache), data, spec, work_dir)
    temperature = spec.loss.get("temperature")
    if temperature is not None and (side or cache) is not None:  # what the student was taught: how soft
        teacher = cache if cache is not None else lambda batch: side(batch.images)
        summary.update(measure_targets(teacher, data, rt.device, rt.eval_batch_size, float(temperature)))
    return model_payload(model, spec.model, data.num_classes), summary
