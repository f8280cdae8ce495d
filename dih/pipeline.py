"""A method's list of stages -> a plan of content-keyed stages -> each reused from the artifact store or
built, in order, with its upstream artifacts."""

import logging
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from omegaconf import DictConfig, OmegaConf

from dih import atomic
from dih.artifacts import Artifact, ArtifactStore, make_key
from dih.errors import UserError, unknown_name
from dih.runtime import resolve_device
from dih.stages import STAGES, STUDENT_STAGES
from dih.stages.base import StageContext
from dih.tracking import Tracker

log = logging.getLogger(__name__)

UNTIL = ("teacher", "heads", "student")


@dataclass
class PlannedStage:
    name: str
    module: ModuleType
    key: str
    identity: dict
    upstream: tuple[str, ...]


def plan(cfg: DictConfig, ctx: StageContext) -> list[PlannedStage]:
    """The method's stages up to ``stage.until``, each with its content key."""
    names = list(cfg.method.stages)
    for name in names:
        if name not in STAGES:
            raise unknown_name("stage", name, STAGES)
    names = names[: _stop_index(cfg, names) + 1]
    planned: list[PlannedStage] = []
    for i, name in enumerate(names):
        module = STAGES[name]
        upstream = tuple(names[:i]) if name in STUDENT_STAGES else module.UPSTREAM
        missing = [u for u in upstream if u not in names[:i]]
        if missing:
            raise UserError(
                f"Method {cfg.method.name} lists stage '{name}' without {', '.join(missing)} before it."
            )
        keys = {u: next(p.key for p in planned if p.name == u) for u in upstream}
        identity = {"stage": name, **module.identity(ctx, keys)}
        planned.append(PlannedStage(name, module, make_key(name, identity), identity, upstream))
    return planned


def _stop_index(cfg: DictConfig, names: list[str]) -> int:
    until = cfg.stage.until
    if until not in UNTIL:
        raise unknown_name("stage", until, UNTIL)
    teacher_side = [i for i, n in enumerate(names) if n not in STUDENT_STAGES]
    if until == "student":
        return len(names) - 1
    if until == "teacher" and "teacher" in names:
        return names.index("teacher")
    if until == "heads" and len(teacher_side) > 1:
        return teacher_side[-1]
    raise UserError(
        f"Method {cfg.method.name} has no {until} stage (its stages are {', '.join(names)}); "
        "choose another stage= or method=."
    )


def run(cfg: DictConfig, run_dir: Path) -> dict:
    """Run (or reuse) every planned stage; write and return the run's summary.

    ``summary.json`` appears only when the run succeeded; a failed run leaves ``failed.json`` saying why,
    so a report over a sweep can list it instead of dropping it.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    # The resolved config beside the results: what the report reads to place the run in its table.
    atomic.write_bytes(run_dir / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True).encode())
    (run_dir / "failed.json").unlink(missing_ok=True)
    tracker = Tracker(run_dir, cfg)
    try:
        summary = _run_stages(cfg, run_dir, tracker)
    except BaseException as exc:
        atomic.write_json(run_dir / "failed.json", {"error": f"{type(exc).__name__}: {exc}"})
        raise
    finally:
        tracker.close()
    atomic.write_json(run_dir / "summary.json", summary)
    return summary


def _run_stages(cfg: DictConfig, run_dir: Path, tracker: Tracker) -> dict:
    store = ArtifactStore(Path(cfg.artifacts.root), on_corrupt=cfg.artifacts.on_corrupt)
    device = resolve_device(cfg.device)
    ctx = StageContext(cfg=cfg, device=device, run_dir=run_dir, store=store, on_epoch=tracker.log_epoch)
    log.info("device %s, artifacts in %s", ctx.device, store.root)
    built: dict[str, Artifact] = {}
    summary = {
        "method": cfg.method.name,
        "dataset": cfg.dataset.name,
        "teacher": cfg.teacher.name,
        "student": cfg.student.name,
        "seed": cfg.seed,
        "stages": {},
    }
    for stage in plan(cfg, ctx):
        upstream = {u: built[u] for u in stage.upstream}
        artifact, fresh = store.get_or_build(
            stage.key, stage.identity, lambda work, s=stage, up=upstream: s.module.build(ctx, up, work)
        )
        log.info(
            "%s: %s artifact %s (%s)", stage.name, "built" if fresh else "reused", stage.key, artifact.path
        )
        built[stage.name] = artifact
        summary["stages"][stage.name] = {"key": stage.key, "reused": not fresh, **artifact.summary}
    summary.update({k: v for k, v in summary["stages"][stage.name].items() if k.startswith("test/")})
    tracker.log_summary(summary)
    return summary
