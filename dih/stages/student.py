"""Student distillation: the student (and any parameters of its loss) learns from the frozen teacher side
with the method's loss; with no teacher upstream (method=ce) it learns alone."""

from torch import Tensor, nn

from dih.engine import StepOutput, Task, fit
from dih.losses import build_loss
from dih.models import build_model
from dih.models.teacher_side import TeacherSide
from dih.runtime import seed_everything
from dih.stages.base import StageContext, load_heads, load_model, model_payload

UPSTREAM: tuple[str, ...] = ()  # whatever teacher-side stages the method lists before it


class DistillTask(Task):
    """Student + loss learn together; the teacher side (if any) runs once per batch, without autograd."""

    def __init__(self, student: nn.Module, loss: nn.Module, teacher_side: TeacherSide | None):
        self.student, self.loss, self.frozen = student, loss, teacher_side
        self.learner = nn.ModuleDict({"student": student, "loss": loss})

    def step(self, batch) -> StepOutput:
        teacher = self.frozen(batch.images) if self.frozen is not None else None
        student = self.student(batch.images)
        total, parts = self.loss(student, teacher, batch)
        return StepOutput(total, parts, student.logits)

    def predict(self, images: Tensor) -> dict[str, Tensor]:
        return {"": self.student(images).logits}


def identity(ctx: StageContext, upstream_keys: dict[str, str]) -> dict:
    cfg = ctx.cfg
    return {
        "data": ctx.data_identity(),
        "model": cfg.student.name,
        "method": cfg.method.name,
        "loss": ctx.method_setting("loss"),
        "recipe": ctx.recipe().identity(),
        "seed": cfg.seed,
        "upstream": upstream_keys,
    }


def teacher_side(ctx: StageContext, upstream: dict) -> TeacherSide | None:
    """Assemble the frozen teacher side from the upstream artifacts the method lists."""
    if "teacher" not in upstream:
        return None
    teacher = load_model(upstream["teacher"], ctx.device)
    heads = load_heads(upstream["heads"], ctx.device) if "heads" in upstream else None
    return TeacherSide(teacher, heads)


def build(ctx: StageContext, upstream: dict, work_dir) -> tuple[dict, dict]:
    seed = ctx.cfg.seed
    seed_everything(seed)
    student = build_model(ctx.cfg.student.name, ctx.data.num_classes).to(ctx.device)
    loss = build_loss(ctx.method_setting("loss")).to(ctx.device)
    task = DistillTask(student, loss, teacher_side(ctx, upstream))
    summary = fit(
        task,
        ctx.data,
        ctx.recipe(),
        ctx.device,
        work_dir,
        seed=seed,
        stage="student",
        on_epoch=ctx.on_epoch,
        progress=ctx.cfg.trainer.progress,
    )
    return model_payload(student, ctx.cfg.student.name, ctx.data.num_classes), summary
