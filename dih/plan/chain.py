"""The plan: the one place that reads a run's config. It turns a method's list of stages into typed stage
specs (dih/stages/specs.py), each keyed by a hash of exactly what it holds, in the order they build; a sweep's
plan is the union of its runs' plans, each artifact once.

``python -m dih.plan`` (dih/plan/listing.py) lists a run's, multirun's or sweep's plan without training.
"""

from dataclasses import dataclass, replace

from omegaconf import DictConfig, OmegaConf

from dih.config.stage_names import CUTS, METHOD_STAGES, PREFIXES, UNTIL
from dih.data import loader
from dih.device import planned_device_type, resolve_device
from dih.errors import UserError, unknown_name
from dih.losses import HeadsLoss, HintLoss, Needs, loss_class
from dih.models import HEAD_KINDS, MODEL_NAMES, heads_class
from dih.models.zoo import check_image_size, model_size, model_version
from dih.stages import stage_version
from dih.stages.runtime import Runtime
from dih.stages.specs import (
    AssistantSpec,
    CohortSpec,
    HeadsSpec,
    HintSpec,
    Spec,
    StudentSpec,
    TeacherSpec,
)
from dih.teacher_side import cache_policy, cohort_cache
from dih.teacher_side.precision import bf16_checked
from dih.train import engine
from dih.train.determinism import apply_determinism
from dih.train.engine import Recipe


@dataclass(frozen=True)
class Planned:
    """One stage of a run: its role in the run (``teacher``, ``cohort``, ``assistant_cohort``...) and spec."""

    name: str
    spec: Spec


def plan_run(cfg: DictConfig) -> list[Planned]:
    """The run's stages up to ``stage.until``, upstream first, each a spec with its key."""
    names = _stages(cfg)
    _check_image_size(cfg, names)
    settings = _Settings(cfg)
    planned: list[Planned] = []
    teacher = heads = hint = assistant = None
    if "teacher" in names:
        teacher = TeacherSpec(
            data=settings.data,
            versions=settings.versions("teacher", model=cfg.teacher.name, loss="ce"),
            model=cfg.teacher.name,
            recipe=settings.recipe,
            seed=cfg.teacher_seed,
        )
        planned.append(Planned("teacher", teacher))
    if "heads" in names:
        kind = _plain(cfg.method.get("heads", "linear"))
        heads_class(kind)  # an unknown kind stops here, before any training
        own = _plain(cfg.method.get("heads_recipe")) or {}
        search = own.get("lr_search")
        heads = HeadsSpec(
            data=settings.data,
            versions=settings.versions("heads", heads=kind, loss="heads"),
            teacher=teacher.key,
            head_kind=kind,
            recipe=heads_recipe(settings.recipe, own),
            seed=cfg.teacher_seed,
            bf16=settings.bf16,
            lr_search=tuple(float(lr) for lr in search) if search else None,
            calibrate=bool(own.get("calibrate", False)),
        )
        planned.append(Planned("heads", heads))
    if "hint" in names:
        layers = {"hint": "stage1", "guided": "stage1", **(_plain(cfg.method.get("hint")) or {})}
        hint = HintSpec(
            data=settings.data,
            versions=settings.versions("hint", model=cfg.student.name, loss="hint"),
            teacher=teacher.key,
            model=cfg.student.name,
            **layers,
            recipe=replace(settings.recipe, epochs=cfg.trainer.hint_epochs),
            seed=cfg.seed,
            bf16=settings.bf16,
        )
        planned.append(Planned("hint", hint))
    if "assistant" in names:
        name = cfg.method.get("assistant")
        if name is None:
            raise UserError(
                f"Method {cfg.method.name} lists an assistant stage but no model for it; pass "
                "method.assistant= one of the zoo's models."
            )
        _check_assistant(cfg.teacher.name, name, cfg.student.name)
        assistant = settings.distill(
            AssistantSpec, planned, name, settings.recipe, cfg.teacher_seed, teacher=teacher
        )
    if "student" in names:
        side = {"teacher": assistant} if assistant else {"teacher": teacher, "heads": heads}
        recipe = replace(
            settings.recipe, batch_size=cfg.method.get("batch_size") or settings.recipe.batch_size
        )
        settings.distill(StudentSpec, planned, cfg.student.name, recipe, cfg.seed, init=hint, **side)
    return _cut(planned, cfg)


# The heads stage's own recipe (method.heads_recipe): each setting left null is the trainer's, as the
# original trains its heads with the teacher's recipe.
HEADS_RECIPE = ("lr", "weight_decay", "epochs", "milestones", "gamma")


def heads_recipe(trainer: Recipe, own: dict) -> Recipe:
    """The trainer's recipe with the heads stage's own settings where it has them. Under a learning-rate
    search the recipe's lr is the first candidate's (what is logged as the stage's lr); the spec's
    ``lr_search`` holds them all."""
    changed = {k: own[k] for k in HEADS_RECIPE if own.get(k) is not None}
    if own.get("lr_search"):
        changed["lr"] = float(own["lr_search"][0])
    return replace(trainer, **changed)


def _cut(planned: list[Planned], cfg: DictConfig) -> list[Planned]:
    """The plan up to and including its ``stage.until`` stage, where that names one of the CUTS."""
    until = cfg.stage.until
    if until not in CUTS:
        return planned
    at = [i for i, p in enumerate(planned) if p.name == until]
    if not at:
        have = ", ".join(p.name for p in planned)
        raise UserError(
            f"This run of method {cfg.method.name} plans no {until} stage (it plans {have}); "
            "choose another stage.until=."
        )
    return planned[: at[-1] + 1]


class _Settings:
    """What every stage of a run reads from its config, read once."""

    def __init__(self, cfg: DictConfig):
        self.cfg = cfg
        self.data = _plain(cfg.dataset)
        self.recipe = Recipe(**{k: _plain(cfg.trainer[k]) for k in Recipe.__dataclass_fields__})
        device_type = planned_device_type(cfg.device)
        self.bf16 = _choose(cfg.teacher_side.bf16, bf16_checked(device_type))
        self.loss = _plain(cfg.method.loss)

    def versions(self, kind: str, model: str | None = None, heads: str | None = None, loss: str = "") -> dict:
        """The version of every component a stage of ``kind`` uses (docs/versions.md)."""
        found = {"stage": stage_version(kind), "loader": loader.VERSION}
        if kind == "cohort":
            return {**found, "cohort_cache": cohort_cache.VERSION}
        found["engine"] = engine.VERSION
        if model is not None:
            found[f"model/{model}"] = model_version(model)
        if heads is not None:
            found[f"heads/{heads}"] = HEAD_KINDS[heads].version
        found[f"loss/{loss}"] = _loss_version(loss)
        return found

    def distill(self, cls, planned: list[Planned], model: str, recipe: Recipe, seed: int, **upstream):
        """Plan an assistant or student (appended to ``planned``, after its cohort cache where the cache is
        on) and return its spec."""
        teacher, heads, init = upstream.get("teacher"), upstream.get("heads"), upstream.get("init")
        loss_name = self.loss["name"]
        if loss_class(loss_name).needs is Needs.NOTHING:  # learns alone even where the method has a teacher
            teacher = heads = None
        elif teacher is None:
            raise UserError(
                f"The {loss_name} loss needs a teacher, but method {self.cfg.method.name} lists no teacher "
                "stage before the student; add one to method.stages or use method.loss.name=ce."
            )
        common = dict(
            data=self.data,
            versions=self.versions(cls.kind, model=model, loss=loss_name),
            model=model,
            loss=self.loss,
            recipe=recipe,
            seed=seed,
            init=init.key if init else None,
        )
        if teacher is not None and cache_policy.wanted(self.cfg.teacher_side.cache, loss_name, recipe.epochs):
            cache = CohortSpec(
                data=self.data,
                versions=self.versions("cohort"),
                teacher=teacher.key,
                heads=heads.key if heads else None,
                pad=cache_policy.PAD,
                bf16=self.bf16,
            )
            planned.append(Planned("cohort" if cls.kind == "student" else f"{cls.kind}_cohort", cache))
            spec = cls(**common, cohort=cache.key)
        elif teacher is not None:
            spec = cls(**common, teacher=teacher.key, heads=heads.key if heads else None, bf16=self.bf16)
        else:
            spec = cls(**common)
        planned.append(Planned(cls.kind, spec))
        return spec


def _loss_version(name: str) -> int:
    """The version of a method's loss, or of the heads or hint stage's own loss."""
    return ({"heads": HeadsLoss, "hint": HintLoss}.get(name) or loss_class(name)).version


def _stages(cfg: DictConfig) -> list[str]:
    """The method's stages up to ``stage.until``, each after the stages it needs."""
    names = list(cfg.method.stages)
    for i, name in enumerate(names):
        if name not in METHOD_STAGES:
            raise unknown_name("stage", name, METHOD_STAGES)
        if name != "teacher" and name != "student" and "teacher" not in names[:i]:
            raise UserError(f"Method {cfg.method.name} lists stage '{name}' without teacher before it.")
    until = cfg.stage.until
    if until in CUTS:
        return names  # cut after planning (_cut): these stages appear only as the chain is planned
    if until not in PREFIXES:
        raise unknown_name("stage", until, UNTIL)
    teacher_side = [i for i, n in enumerate(names) if n != "student"]
    if until == "student":
        return names
    if until == "teacher" and "teacher" in names:
        return names[: names.index("teacher") + 1]
    if until == "heads" and len(teacher_side) > 1:
        return names[: teacher_side[-1] + 1]
    raise UserError(
        f"Method {cfg.method.name} has no {until} stage (its stages are {', '.join(names)}); "
        "choose another stage= or method=."
    )


# The image side of the data sets whose images have one size unless dataset.image_size resizes them.
NATIVE_SIDE = {"cifar10": 32, "cifar100": 32, "tiny_imagenet": 64}


def _check_image_size(cfg: DictConfig, names: list[str]) -> None:
    """Every model the run trains takes the data set's image size, where the config tells it (an image
    folder of native size is known only when it loads)."""
    size = cfg.dataset.get("image_size") or NATIVE_SIDE.get(cfg.dataset.name)
    if size is None:
        return
    height, width = (size, size) if isinstance(size, int) else (int(v) for v in size)
    models = {"teacher": cfg.teacher.name if "teacher" in names else None}
    models["assistant"] = cfg.method.get("assistant") if "assistant" in names else None
    models["student"] = cfg.student.name if {"hint", "student"} & set(names) else None
    for role, name in models.items():
        if name is not None:
            check_image_size(str(name), height, width, role)


def _check_assistant(teacher: str, assistant: str, student: str) -> None:
    """TAKD's assistant must be a zoo model strictly between teacher and student in size."""
    if assistant not in MODEL_NAMES:
        raise unknown_name("assistant", assistant, MODEL_NAMES)
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


def runtime(cfg: DictConfig, on_epoch=lambda line: None) -> Runtime:
    """The run's runtime settings: everything of the config that is in no key."""
    device = resolve_device(cfg.device)
    apply_determinism(device.type, bool(cfg.trainer.deterministic))  # before any model or cuBLAS call
    return Runtime(
        device=device,
        eval_batch_size=cfg.trainer.eval_batch_size,
        progress=cfg.trainer.progress,
        channels_last=_choose(cfg.teacher_side.channels_last, device.type == "cuda"),
        compile=bool(cfg.teacher_side.compile),
        compile_training=bool(cfg.trainer.compile),
        cache_device_share=float(cfg.teacher_side.cache_device_share),
        on_epoch=on_epoch,
    )


def _choose(value, auto: bool) -> bool:
    return auto if value == "auto" else bool(value)


def _plain(value):
    return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value
