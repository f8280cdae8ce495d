"""Student distillation: the student (and any parameters of its loss) learns from the frozen teacher side
with the method's loss; with no teacher upstream (method=ce) it learns alone. TAKD's assistant is trained
by this same stage kind, with the assistant in the student's place."""

from torch import Tensor, nn

from dih.engine import StepOutput, Task, fit
from dih.losses import LossContext, build_loss
from dih.models import build_model, feature_shapes
from dih.models.teacher_side import TeacherSide
from dih.runtime import seed_everything
from dih.stages.base import StageContext, load_heads, load_model, model_payload

UPSTREAM: tuple[str, ...] = ()  # whatever stages the method lists before it


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
        "recipe": student_recipe(ctx).identity(),
        "seed": cfg.seed,
        "upstream": upstream_keys,
    }


def student_recipe(ctx: StageContext):
    """The trainer's recipe with the method's own batch size, if it has one (CRD and TOFD use 128)."""
    return ctx.recipe(batch_size=ctx.method_setting("batch_size"))


def teacher_side(ctx: StageContext, upstream: dict) -> TeacherSide | None:
    """The frozen teacher side from the upstream artifacts: TAKD's assistant stands in for the teacher;
    heads (DIH, MHKD, TOFD) join the teacher's own classifier in the cohort."""
    if "assistant" in upstream:
        return TeacherSide(load_model(upstream["assistant"], ctx.device))
    if "teacher" not in upstream:
        return None
    heads = load_heads(upstream["heads"], ctx.device) if "heads" in upstream else None
    return TeacherSide(load_model(upstream["teacher"], ctx.device), heads)


def loss_context(ctx: StageContext, student: nn.Module, side: TeacherSide | None) -> LossContext:
    shape = ctx.data.image_shape
    return LossContext(
        num_classes=ctx.data.num_classes,
        num_train=len(ctx.data.train_labels),
        image_shape=shape,
        student_features=feature_shapes(student, shape),
        student_stages=tuple(student.stage_names),
        teacher_features=feature_shapes(side.teacher, shape) if side is not None else None,
        teacher_stages=tuple(side.teacher.stage_names) if side is not None else (),
        train_labels=ctx.data.train_labels.to(ctx.device),
    )


def train_student(
    ctx: StageContext,
    upstream: dict,
    work_dir,
    *,
    model_name: str,
    seed: int,
    stage: str,
    side: TeacherSide | None,
    recipe,
) -> tuple[dict, dict]:
    """Build ``model_name`` (from FitNets' hint-stage weights when upstream has them) and distil it."""
    seed_everything(seed)
    student = build_model(model_name, ctx.data.num_classes).to(ctx.device)
    if "hint" in upstream:
        student.load_state_dict(upstream["hint"].load()["model"])
    loss = build_loss(ctx.method_setting("loss"), loss_context(ctx, student, side)).to(ctx.device)
    summary = fit(
        DistillTask(student, loss, side),
        ctx.data,
        recipe,
        ctx.device,
        work_dir,
        **ctx.fit_options(seed, stage),
    )
    return model_payload(student, model_name, ctx.data.num_classes), summary


def build(ctx: StageContext, upstream: dict, work_dir) -> tuple[dict, dict]:
    return train_student(
        ctx,
        upstream,
        work_dir,
        model_name=ctx.cfg.student.name,
        seed=ctx.cfg.seed,
        stage="student",
        side=teacher_side(ctx, upstream),
        recipe=student_recipe(ctx),
    )
