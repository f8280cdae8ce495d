"""FitNets' hint stage: the student up to its guided layer, through a regressor, learns to reproduce the
frozen teacher's hint layer (MSE); the KD stage that follows starts from these weights."""

from torch import Tensor, nn

from dih.engine import StepOutput, Task, fit
from dih.losses.fitnets import HintLoss
from dih.models import build_model
from dih.models.teacher_side import TeacherSide
from dih.runtime import seed_everything
from dih.stages.base import StageContext, load_model, model_payload
from dih.stages.student import loss_context

UPSTREAM = ("teacher",)


class HintTask(Task):
    """Student + regressor learn ``MSE(r(g_s), h_t)``; nothing is classified, so nothing is evaluated."""

    evaluates = False

    def __init__(self, student: nn.Module, loss: HintLoss, teacher_side: TeacherSide):
        self.student, self.loss, self.frozen = student, loss, teacher_side
        self.learner = nn.ModuleDict({"student": student, "regressor": loss})

    def step(self, batch) -> StepOutput:
        student = self.student(batch.images)
        total, parts = self.loss(student, self.frozen(batch.images), batch)
        return StepOutput(total, parts, student.logits)

    def predict(self, images: Tensor) -> dict[str, Tensor]:
        return {}


def settings(ctx: StageContext) -> dict:
    return {"hint": "stage1", "guided": "stage1", **(ctx.method_setting("hint") or {})}


def recipe(ctx: StageContext):
    return ctx.recipe(epochs=ctx.cfg.trainer.hint_epochs)


def identity(ctx: StageContext, upstream_keys: dict[str, str]) -> dict:
    return {
        "teacher": upstream_keys["teacher"],
        "model": ctx.cfg.student.name,
        "hint": settings(ctx),
        "recipe": recipe(ctx).identity(),
        "seed": ctx.cfg.seed,
        **ctx.speed.identity(),
    }


def build(ctx: StageContext, upstream: dict, work_dir) -> tuple[dict, dict]:
    seed = ctx.cfg.seed
    seed_everything(seed)
    side = ctx.teacher_side(load_model(upstream["teacher"], ctx.device))
    student = build_model(ctx.cfg.student.name, ctx.data.num_classes).to(ctx.device)
    loss = HintLoss(context=loss_context(ctx, student, side), **settings(ctx)).to(ctx.device)
    summary = fit(
        HintTask(student, loss, side),
        ctx.data,
        recipe(ctx),
        ctx.device,
        work_dir,
        **ctx.fit_options(seed, "hint"),
    )
    return model_payload(student, ctx.cfg.student.name, ctx.data.num_classes), summary
