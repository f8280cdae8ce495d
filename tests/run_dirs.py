"""Run directories as the pipeline leaves them, written by hand for the report's tests: a run's config.yaml
and its summary.json (with or without the stages' identities), nothing trained."""

import json
from pathlib import Path

import yaml


def write_run(
    directory: Path,
    method: str,
    seed: int,
    *,
    dataset: str = "cifar100",
    teacher: str = "res110",
    student: str = "res8",
    last: float | None = None,
    best: float | None = None,
    error: str | None = None,
    heads: list[float] | None = None,
    teacher_acc: float = 70.0,
    config: dict | None = None,
) -> Path:
    """A run directory as the pipeline leaves it: config.yaml, then summary.json, failed.json or neither."""
    directory.mkdir(parents=True)
    cfg = {
        "dataset": {"name": dataset, "root": "./data", "val_fraction": 0.1},
        "teacher": {"name": teacher},
        "student": {"name": student},
        "method": {"name": method, "stages": ["teacher", "student"], "loss": {"alpha": 0.1}},
        "trainer": {"epochs": 3},
        "seed": seed,
        "device": "auto",
        "artifacts": {"root": "artifacts"},
    }
    for group, values in (config or {}).items():
        cfg[group].update(values)
    (directory / "config.yaml").write_text(yaml.safe_dump(cfg))
    if error is not None:
        (directory / "failed.json").write_text(json.dumps({"error": error}))
    if last is None:
        return directory
    student_stage = {"key": f"student-{method}-{seed}-{last}", "reused": False, "test/acc_last": last}
    if best is not None:
        student_stage["test/acc_best_val"] = best
    stages = {"teacher": {"key": f"teacher-{teacher}", "reused": True, "test/acc_last": teacher_acc}}
    if heads is not None:
        stages["heads"] = {"key": f"heads-{teacher}", "reused": True}
        stages["heads"].update({f"head{i + 1}/acc": a for i, a in enumerate(heads)})
    stages["student"] = student_stage
    summary = {"method": method, "dataset": dataset, "teacher": teacher, "student": student, "seed": seed}
    summary |= {"stages": stages, "test/acc_last": last}
    (directory / "summary.json").write_text(json.dumps(summary))
    return directory


def write_planned_run(directory: Path, last: float, *overrides: str, workers: int = 4) -> Path:
    """A finished run as the pipeline leaves it, its config and stage identities from the real plan of
    ``overrides`` (nothing trained: the student's accuracy is ``last``); ``workers``: a trainer setting in
    no key that this project does not have (yet), as a later version's config would hold it."""
    from omegaconf import OmegaConf

    from dih.config.compose import compose_run
    from dih.plan.chain import plan_run

    cfg = compose_run(["experiment=smoke", "method=kd", "teacher=res14", *overrides])
    directory.mkdir(parents=True)
    config = OmegaConf.to_container(cfg, resolve=True)
    config["trainer"]["workers"] = workers
    (directory / "config.yaml").write_text(yaml.safe_dump(config))
    stages = {
        p.name: {"key": p.spec.key, "identity": p.spec.identity(), "reused": False, "test/acc_last": last}
        for p in plan_run(cfg)
    }
    summary = {"method": cfg.method.name, "seed": cfg.seed, "stages": stages, "test/acc_last": last}
    (directory / "summary.json").write_text(json.dumps(summary))
    return directory
