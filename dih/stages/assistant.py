"""TAKD's teacher assistant: a mid-sized model distilled from the teacher with KD, then teaching the student
in the teacher's place. One assistant per (teacher, assistant model) is shared by every student seed."""

from dih.errors import UserError
from dih.models import MODEL_NAMES
from dih.models.zoo import model_size
from dih.stages.base import StageContext, load_model
from dih.stages.student import train_student, uses_cache

UPSTREAM = ("teacher",)


def check_sizes(teacher: str, assistant: str, student: str) -> None:
    """The assistant must be strictly between teacher and student in size (parameter count)."""
    if not model_size(teacher) > model_size(assistant) > model_size(student):
        fitting = [
            n
            for n in sorted(MODEL_NAMES, key=model_size)
            if model_size(teacher) > model_size(n) > model_size(student)
        ]
        choices = ", ".join(fitting) or "(none fits this pair)"
        raise UserError(
            f"TAKD's assistant must be smaller than the teacher {teacher} and larger than the student "
            f"{student}, and {assistant} is not; pass method.assistant= one of: {choices}."
        )


def identity(ctx: StageContext, upstream_keys: dict[str, str]) -> dict:
    cfg = ctx.cfg
    assistant = cfg.method.assistant
    if assistant not in MODEL_NAMES:
        raise UserError(f"Unknown assistant '{assistant}'; choose one of: {', '.join(MODEL_NAMES)}.")
    check_sizes(cfg.teacher.name, assistant, cfg.student.name)
    return {
        "teacher": upstream_keys["teacher"],
        "model": assistant,
        "loss": ctx.method_setting("loss"),
        "recipe": ctx.recipe().identity(),
        "seed": cfg.teacher_seed,
        **ctx.speed.identity(),
        "cohort_cache": uses_cache(ctx, True, ctx.recipe().epochs),
    }


def build(ctx: StageContext, upstream: dict, work_dir) -> tuple[dict, dict]:
    side = ctx.teacher_side(load_model(upstream["teacher"], ctx.device))
    return train_student(
        ctx,
        {},
        work_dir,
        model_name=ctx.cfg.method.assistant,
        seed=ctx.cfg.teacher_seed,
        stage="assistant",
        side=side,
        recipe=ctx.recipe(),
        cache_from={"teacher": upstream["teacher"]} if uses_cache(ctx, True, ctx.recipe().epochs) else None,
    )
