"""Teacher-side heads: classifiers mounted on the frozen teacher's stages learn with cross-entropy while the
teacher stays fixed. DIH's linear heads (SPEC s.3), and likewise MHKD's heads and TOFD's auxiliary
classifiers, chosen by the method's ``heads:`` setting."""

import torch.nn.functional as F
from torch import Tensor, nn

from dih.engine import StepOutput, Task, fit
from dih.models import heads_class
from dih.models.teacher_side import TeacherSide
from dih.runtime import seed_everything
from dih.stages.base import StageContext, heads_payload, load_model

UPSTREAM = ("teacher",)


class HeadsTask(Task):
    """Only the heads learn, all in one optimiser: ``sum_i CE(h_i(f_i), y)``."""

    def __init__(self, teacher_side: TeacherSide, heads: nn.Module):
        self.frozen, self.learner = teacher_side, heads

    def _head_logits(self, images: Tensor) -> list[Tensor]:
        return self.learner(self.frozen(images).features)

    def step(self, batch) -> StepOutput:
        logits = self._head_logits(batch.images)
        parts = {f"ce_head{i}": F.cross_entropy(z, batch.labels) for i, z in enumerate(logits, 1)}
        return StepOutput(sum(parts.values()), parts, logits[-1])

    def predict(self, images: Tensor) -> dict[str, Tensor]:
        return {f"head{i}": z for i, z in enumerate(self._head_logits(images), 1)}


def kind(ctx: StageContext) -> str:
    return ctx.method_setting("heads", "linear")


def identity(ctx: StageContext, upstream_keys: dict[str, str]) -> dict:
    heads_class(kind(ctx))  # an unknown kind stops here, before any training
    return {
        "teacher": upstream_keys["teacher"],
        "kind": kind(ctx),
        "recipe": ctx.recipe().identity(),
        "seed": ctx.cfg.teacher_seed,
        **ctx.speed.identity(),
    }


def build(ctx: StageContext, upstream: dict, work_dir) -> tuple[dict, dict]:
    seed = ctx.cfg.teacher_seed
    seed_everything(seed)
    teacher = load_model(upstream["teacher"], ctx.device)
    heads = (
        heads_class(kind(ctx)).for_model(teacher, ctx.data.num_classes, ctx.data.image_shape).to(ctx.device)
    )
    summary = fit(
        HeadsTask(ctx.teacher_side(teacher), heads),
        ctx.data,
        ctx.recipe(),
        ctx.device,
        work_dir,
        **ctx.fit_options(seed, "heads"),
    )
    return heads_payload(heads, kind(ctx), ctx.data.num_classes), summary
