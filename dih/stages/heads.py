"""DIH head fine-tuning: k linear heads learn on the frozen teacher's stage outputs (SPEC s.3)."""

import torch.nn.functional as F
from torch import Tensor

from dih.engine import StepOutput, Task, fit
from dih.models import LinearHeads
from dih.models.teacher_side import TeacherSide
from dih.runtime import seed_everything
from dih.stages.base import StageContext, load_model

UPSTREAM = ("teacher",)


class HeadsTask(Task):
    """Only the heads learn, all in one optimiser: ``sum_i CE(h_i(f_i), y)``."""

    def __init__(self, teacher_side: TeacherSide, heads: LinearHeads):
        self.frozen, self.learner = teacher_side, heads

    def _head_logits(self, images: Tensor) -> list[Tensor]:
        return self.learner(self.frozen(images).features)

    def step(self, batch) -> StepOutput:
        logits = self._head_logits(batch.images)
        parts = {f"ce_head{i}": F.cross_entropy(z, batch.labels) for i, z in enumerate(logits, 1)}
        return StepOutput(sum(parts.values()), parts, logits[-1])

    def predict(self, images: Tensor) -> dict[str, Tensor]:
        return {f"head{i}": z for i, z in enumerate(self._head_logits(images), 1)}


def identity(ctx: StageContext, upstream_keys: dict[str, str]) -> dict:
    return {
        "teacher": upstream_keys["teacher"],
        "recipe": ctx.recipe().identity(),
        "seed": ctx.cfg.teacher_seed,
    }


def build(ctx: StageContext, upstream: dict, work_dir) -> tuple[dict, dict]:
    seed = ctx.cfg.teacher_seed
    seed_everything(seed)
    teacher = load_model(upstream["teacher"], ctx.device)
    heads = LinearHeads.for_model(teacher, ctx.data.num_classes, ctx.data.image_shape).to(ctx.device)
    summary = fit(
        HeadsTask(TeacherSide(teacher), heads),
        ctx.data,
        ctx.recipe(),
        ctx.device,
        work_dir,
        seed=seed,
        stage="heads",
        on_epoch=ctx.on_epoch,
        progress=ctx.cfg.trainer.progress,
    )
    shapes = {name: list(shape) for name, shape in heads.feature_shapes.items()}
    payload = {
        "heads": {k: v.cpu() for k, v in heads.state_dict().items()},
        "shapes": shapes,
        "num_classes": ctx.data.num_classes,
    }
    return payload, summary
