"""Teacher training: a zoo model trained alone with cross-entropy (SPEC s.6)."""

import torch.nn.functional as F
from torch import Tensor, nn

from dih.engine import StepOutput, Task, fit
from dih.models import build_model
from dih.runtime import seed_everything
from dih.stages.base import StageContext, model_payload

UPSTREAM: tuple[str, ...] = ()


class SupervisedTask(Task):
    """One model, cross-entropy on the labels."""

    def __init__(self, model: nn.Module):
        self.learner = model

    def step(self, batch) -> StepOutput:
        logits = self.learner(batch.images).logits
        loss = F.cross_entropy(logits, batch.labels)
        return StepOutput(loss, {"ce": loss}, logits)

    def predict(self, images: Tensor) -> dict[str, Tensor]:
        return {"": self.learner(images).logits}


def identity(ctx: StageContext, upstream_keys: dict[str, str]) -> dict:
    return {
        "data": ctx.data_identity(),
        "model": ctx.cfg.teacher.name,
        "recipe": ctx.recipe().identity(),
        "seed": ctx.cfg.teacher_seed,
    }


def build(ctx: StageContext, upstream: dict, work_dir) -> tuple[dict, dict]:
    seed = ctx.cfg.teacher_seed
    seed_everything(seed)
    model = build_model(ctx.cfg.teacher.name, ctx.data.num_classes).to(ctx.device)
    summary = fit(
        SupervisedTask(model),
        ctx.data,
        ctx.recipe(),
        ctx.device,
        work_dir,
        **ctx.fit_options(seed, "teacher"),
    )
    return model_payload(model, ctx.cfg.teacher.name, ctx.data.num_classes), summary
