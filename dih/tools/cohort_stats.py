"""How soft the cohort's targets are: for each classifier of a finished run's teacher side (each head, shallow
first, then the teacher's own classifier), on the test set or the training images, its accuracy, its logits'
spread and the softened distribution softmax(z / T) that the student is distilled towards at the run's
temperature.

    python -m dih.cohort_stats <run dir> [--split test|train] [--temperature T] [--data-root DIR]

The teacher side runs as the run's student stage ran it (its bf16 setting, from the student's spec). The
training split is read without augmentation: what the student is taught on, up to its crops and flips.

A classifier whose logits are far apart relative to T gives (almost) one-hot targets: it teaches its own
argmax, right or wrong, rather than how classes resemble each other. The numbers are measured, not kept:
the command reads the run's teacher and heads artifacts and the data set and runs the frozen teacher side.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import torch

from dih.errors import UserError, command
from dih.store.run_dir import RunDir
from dih.teacher_side.softness import softness

SPLITS = ("test", "train")


def cohort_logits(run_dir: Path, data_root: str | None = None, batch_size: int = 512, split: str = "test"):
    """(the cohort's logits on ``split``, shallowest head first, teacher last; its labels; the run)."""
    from dih.stages.artifact_io import load_heads, load_model
    from dih.teacher_side.side import Speed, TeacherSide
    from dih.tools.loading import data_settings, load_training_data

    run = RunDir.finished(run_dir)
    if "heads" not in run.stages or "teacher" not in run.stages:
        raise UserError(
            f"The run in {run_dir} has no heads ({', '.join(run.stages)}); give a run of a method with heads "
            "(dih, mhkd, tofd)."
        )
    if split not in SPLITS:
        raise UserError(f"--split is '{split}'; give one of {', '.join(SPLITS)}.")
    found = {role: run.artifact(role) for role in ("teacher", "heads")}
    device = torch.device("cpu")
    speed = Speed(bf16=run_bf16(run, found["heads"]))
    side = TeacherSide(load_model(found["teacher"], device), load_heads(found["heads"], device), speed)
    data = load_training_data(data_settings(run_dir, found["teacher"], data_root))
    images, labels = getattr(data, f"{split}_images"), getattr(data, f"{split}_labels")
    mean = torch.tensor(data.mean).view(1, -1, 1, 1)
    std = torch.tensor(data.std).view(1, -1, 1, 1)
    outputs = []
    with torch.no_grad():
        for start in range(0, len(images), batch_size):
            batch = images[start : start + batch_size].float().div(255.0)
            outputs.append(side((batch - mean) / std).cohort)
    cohort = [torch.cat(parts) for parts in zip(*outputs)]
    return cohort, labels, run


def run_bf16(run: RunDir, heads) -> bool:
    """Whether the run's student stage ran the teacher side in bf16: its spec says (in summary.json, else in
    its artifact's meta.json); without a student, the heads stage's does."""
    identity = run.identity("student", stored=True)
    if identity is not None:
        return bool(identity.get("bf16") or False)
    return bool(heads.meta.get("identity", {}).get("bf16", False))


def check_temperature(temperature: float | None) -> None:
    """Refuse, before anything is read, a --temperature that softmax(z / T) cannot use: zero, negative
    (it inverts the ranking), nan or infinite (every target uniform or nan)."""
    if temperature is not None and not (math.isfinite(temperature) and temperature > 0):
        raise UserError(
            f"--temperature is {temperature:g}; give a positive finite number, or leave it out for the "
            "run's own."
        )


def cohort_stats(
    run_dir: str | Path,
    temperature: float | None = None,
    data_root: str | None = None,
    split: str = "test",
):
    """Per classifier (name, softness dict) on ``split`` at ``temperature`` (default: the run's loss
    temperature)."""
    check_temperature(temperature)
    run_dir = Path(run_dir).expanduser().resolve()
    cohort, labels, run = cohort_logits(run_dir, data_root, split=split)
    if temperature is None:
        temperature = (run.config.get("method", {}).get("loss") or {}).get("temperature")
        if temperature is None:
            raise UserError(f"The run in {run_dir} sets no method.loss.temperature; pass --temperature.")
    names = [f"head {i}" for i in range(1, len(cohort))] + ["teacher"]
    return float(temperature), [
        (name, softness(z, labels, float(temperature))) for name, z in zip(names, cohort)
    ]


@command
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m dih.cohort_stats",
        description="How soft each classifier of a run's cohort is at the run's temperature.",
    )
    parser.add_argument(
        "--split", choices=SPLITS, default="test", help="test (default) or the training images, unaugmented"
    )
    parser.add_argument("run_dir", type=Path, help="a finished run's directory (dih, mhkd or tofd)")
    parser.add_argument("--temperature", type=float, default=None, help="default: the run's own")
    parser.add_argument("--data-root", default=None, help="where the data is, if not where it was")
    args = parser.parse_args(argv)
    temperature, rows = cohort_stats(args.run_dir, args.temperature, args.data_root, args.split)
    print(f"{args.split} set, T = {temperature:g}: softmax(z / T) of each classifier")
    print(
        f"| classifier | {args.split} acc (%) | mean logit range | mean top prob | entropy / log C "
        "| top >= 0.99 (%) |"
    )
    print("|---|---|---|---|---|---|")
    for name, s in rows:
        print(
            f"| {name} | {s['acc']:.2f} | {s['logit_range']:.1f} | {s['top_prob']:.3f} | {s['entropy']:.3f} "
            f"| {s['one_hot_share']:.1f} |"
        )
    return 0
