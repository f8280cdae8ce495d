"""Student distillation: the student (and any parameters of its loss) learns from the frozen teacher side
with the method's loss; with no teacher upstream (method=ce) it learns alone. TAKD's assistant is trained
by this same stage kind, with the assistant in the student's place. A loss that reads only the cohort's
logits (KD, DIH) can read them from the cohort cache instead of running the teacher."""

import logging
import time

from torch import Tensor, nn

from dih import cohort_cache
from dih.artifacts import make_key
from dih.cohort_cache import CohortCache
from dih.engine import StepOutput, Task, fit
from dih.losses import LOGITS_ONLY, LossContext, build_loss
from dih.models import build_model, feature_shapes
from dih.models.teacher_side import TeacherSide
from dih.runtime import seed_everything
from dih.stages.base import StageContext, load_heads, load_model, model_payload

log = logging.getLogger(__name__)

UPSTREAM: tuple[str, ...] = ()  # whatever stages the method lists before it
PAD = 4  # the loader's crop padding: the cache holds one entry per crop offset and flip


class DistillTask(Task):
    """Student + loss learn together; the teacher side (if any) runs once per batch, without autograd, or
    its logits come from the cohort cache."""

    def __init__(
        self,
        student: nn.Module,
        loss: nn.Module,
        teacher_side: TeacherSide | None,
        cache: CohortCache | None = None,
    ):
        self.student, self.loss, self.cache = student, loss, cache
        self.frozen = teacher_side if cache is None else None
        self.learner = nn.ModuleDict({"student": student, "loss": loss})

    def teacher_output(self, batch):
        if self.cache is not None:
            return self.cache(batch)
        return self.frozen(batch.images) if self.frozen is not None else None

    def step(self, batch) -> StepOutput:
        teacher = self.teacher_output(batch)
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
        **(ctx.speed.identity() if upstream_keys else {}),
        "cohort_cache": uses_cache(ctx, bool(upstream_keys), student_recipe(ctx).epochs),
    }


def uses_cache(ctx: StageContext, has_teacher: bool, epochs: int) -> bool:
    """Whether the student reads the cohort cache: never for a loss that needs the teacher's features;
    with ``auto``, when the stage runs at least as many epochs as there are variants, where building the
    cache costs less than running the teacher live even for this one student (and every later student
    of the same cohort reuses it)."""
    setting = ctx.cfg.teacher_side.cache
    applies = has_teacher and ctx.cfg.method.loss.name in LOGITS_ONLY
    if setting == "auto":
        return applies and epochs >= cohort_cache.num_variants(PAD)
    return applies and bool(setting)


def open_cache(ctx: StageContext, upstream: dict, side: TeacherSide) -> CohortCache:
    """The cohort cache of this teacher side and training split, built once if the store lacks it."""
    sources = {name: upstream[name].key for name in ("teacher", "heads", "assistant") if name in upstream}
    identity = {
        "stage": "cohort",
        "sources": sources,
        "data": ctx.data_identity(),
        "pad": PAD,
        **ctx.speed.identity(),
    }
    key = make_key("cohort", identity)

    def build(work):
        started = time.perf_counter()
        meta = cohort_cache.build(
            side,
            ctx.data.train_images,
            ctx.data.mean,
            ctx.data.std,
            PAD,
            work,
            batch_size=ctx.cfg.trainer.eval_batch_size,
        )
        return meta, {"shape": meta["shape"], "time/total_s": round(time.perf_counter() - started, 1)}

    artifact, fresh = ctx.store.get_or_build(key, identity, build)
    log.info("cohort cache: %s artifact %s (%s)", "built" if fresh else "reused", key, artifact.path)
    return CohortCache(artifact, ctx.device)


def student_recipe(ctx: StageContext):
    """The trainer's recipe with the method's own batch size, if it has one (CRD and TOFD use 128)."""
    return ctx.recipe(batch_size=ctx.method_setting("batch_size"))


def teacher_side(ctx: StageContext, upstream: dict) -> TeacherSide | None:
    """The frozen teacher side from the upstream artifacts: TAKD's assistant stands in for the teacher;
    heads (DIH, MHKD, TOFD) join the teacher's own classifier in the cohort."""
    if "assistant" in upstream:
        return ctx.teacher_side(load_model(upstream["assistant"], ctx.device))
    if "teacher" not in upstream:
        return None
    heads = load_heads(upstream["heads"], ctx.device) if "heads" in upstream else None
    return ctx.teacher_side(load_model(upstream["teacher"], ctx.device), heads)


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
    cache_from: dict | None = None,
) -> tuple[dict, dict]:
    """Build ``model_name`` (from FitNets' hint-stage weights when upstream has them) and distil it; with
    ``cache_from`` (the upstream artifacts that make up ``side``) the cohort's logits come from the cache."""
    seed_everything(seed)
    student = build_model(model_name, ctx.data.num_classes).to(ctx.device)
    if "hint" in upstream:
        student.load_state_dict(upstream["hint"].load()["model"])
    loss = build_loss(ctx.method_setting("loss"), loss_context(ctx, student, side)).to(ctx.device)
    summary = fit(
        DistillTask(student, loss, side, open_cache(ctx, cache_from, side) if cache_from else None),
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
        cache_from=upstream if uses_cache(ctx, bool(upstream), student_recipe(ctx).epochs) else None,
    )
