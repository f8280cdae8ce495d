"""Does running the frozen teacher side in bf16 change what it predicts, and is it faster? The check
behind ``teacher_side.bf16=auto`` (dih/stages/runtime.py ``bf16_checked``).

    python -m dih.precision_check outputs/<run>      # a run whose chain reached its heads stage

Evaluates every classifier of the run's cohort (its heads and the teacher's own classifier) on the test
split twice, with the teacher side in float32 and as its bf16 copy, on the run's device (or ``--device``),
and prints each accuracy, the difference in points and the share of test images whose prediction changed.
Then it times the teacher side's forward on a training-sized batch in both precisions (warm-up excluded)
and says whether the rule ``auto`` follows for this kind of device holds here: bf16 where it keeps every
classifier within 0.1 points and is faster, float32 otherwise; where it does not, what to pass instead.
The same determinism settings as a run apply (``--no-deterministic`` as ``trainer.deterministic=false``).
"""

import argparse
from dataclasses import dataclass
from pathlib import Path

import torch

from dih.data import load_data
from dih.data.loader import DeviceLoader
from dih.device import resolve_device
from dih.errors import UserError, command
from dih.stages.artifact_io import load_heads, load_model
from dih.store.run_dir import RunDir
from dih.teacher_side.precision import bf16_checked
from dih.teacher_side.side import Speed, TeacherSide
from dih.tools.bench_loops import forward_loop, measure
from dih.train.determinism import apply_determinism

TOLERANCE = 0.1  # points of accuracy bf16 may move any classifier of the cohort


@dataclass
class Check:
    rows: list[dict]  # per classifier: accuracies in fp32 and bf16, predictions changed (all in %)
    fp32_rate: float  # teacher-side forward, images/s
    bf16_rate: float
    device: torch.device


@torch.no_grad()
def predictions(side: TeacherSide, loader: DeviceLoader) -> torch.Tensor:
    """``[classifiers, images]`` predicted classes of the whole cohort."""
    return torch.cat([torch.stack([z.argmax(1) for z in side(b.images).cohort]) for b in loader.epoch(0)], 1)


def check(
    run_dir: Path, device: str | None = None, deterministic: bool = True, seconds: float = 2.0
) -> Check:
    """The accuracies of the run's cohort in both precisions and the teacher side's speed in each."""
    run = RunDir.finished(run_dir)
    if "teacher" not in run.stages:
        raise UserError(
            f"The run in {run_dir} has no teacher; pick a run of a method with one (dih, kd, ...)."
        )
    target = resolve_device(device or run.config.get("device", "auto"))
    apply_determinism(target.type, deterministic)  # as a run would, before any model is built
    teacher = load_model(run.artifact("teacher"), target)
    heads = load_heads(run.artifact("heads"), target) if "heads" in run.stages else None
    data = load_data(run.dataset())
    trainer = run.config.get("trainer") or {}
    loader = DeviceLoader(
        data.test_images,
        data.test_labels,
        batch_size=trainer.get("eval_batch_size", 512),
        mean=data.mean,
        std=data.std,
        device=target,
        train=False,
    )
    labels = data.test_labels.to(target)
    sides = {bf16: TeacherSide(teacher, heads, Speed(bf16=bf16)) for bf16 in (False, True)}
    fp32, bf16 = (predictions(sides[b], loader) for b in (False, True))
    names = [f"head{i}" for i in range(1, len(fp32))] + ["teacher"]
    rows = [
        {
            "classifier": name,
            "fp32": 100 * (a == labels).float().mean().item(),
            "bf16": 100 * (b == labels).float().mean().item(),
            "changed": 100 * (a != b).float().mean().item(),
        }
        for name, a, b in zip(names, fp32, bf16, strict=True)
    ]
    batch = next(iter(loader.epoch(0))).images[: trainer.get("batch_size", 64)]  # a training step's batch
    loops = {b: forward_loop(sides[b], batch) for b in (False, True)}
    rates = measure(loops, seconds, repeats=3, warmup=2, device=target)
    return Check(rows, rates[False], rates[True], target)


def verdict(c: Check) -> str:
    """Whether ``auto``'s choice for this kind of device is right here, and what to pass where it is not."""
    worst = max(abs(r["bf16"] - r["fp32"]) for r in c.rows)
    held, faster = worst <= TOLERANCE, c.bf16_rate > c.fp32_rate
    best, auto = held and faster, bf16_checked(c.device.type)
    found = (
        f"bf16 moved a classifier by at most {worst:.2f} points ({'within' if held else 'beyond'} "
        f"{TOLERANCE}) and ran the teacher side at {c.bf16_rate / c.fp32_rate:.2f}x float32's speed "
        f"({c.bf16_rate:.1f} against {c.fp32_rate:.1f} images/s) on {c.device}"
    )
    choice = "bf16" if auto else "float32"
    if best == auto:
        return f"{found}: the rule holds here (teacher_side.bf16=auto runs {choice} on {c.device.type})."
    return (
        f"{found}: teacher_side.bf16=auto runs {choice} on {c.device.type}, which is wrong for this device; "
        f"pass teacher_side.bf16={str(best).lower()} for runs on it."
    )


@command
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m dih.precision_check", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--device", help="where to check (default: the run's device setting)")
    parser.add_argument(
        "--no-deterministic",
        dest="deterministic",
        action="store_false",
        help="as trainer.deterministic=false",
    )
    args = parser.parse_args(argv)
    c = check(args.run_dir, args.device, args.deterministic)
    print("| classifier | fp32 acc | bf16 acc | difference (points) | predictions changed |")
    print("|---|---:|---:|---:|---:|")
    for r in c.rows:
        print(
            f"| {r['classifier']} | {r['fp32']:.2f} | {r['bf16']:.2f} | {r['bf16'] - r['fp32']:+.2f} | "
            f"{r['changed']:.2f}% |"
        )
    print(f"\n{verdict(c)}")
    return 0

