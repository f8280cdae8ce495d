"""Does running the frozen teacher side in bf16 change what it predicts, and is it faster? The check
behind ``teacher_side.bf16=auto`` (dih/stages/runtime.py ``bf16_checked``).

    python -m dih.precision_check outputs/<run>      # a run whose chain reached its heads stage

Evaluates every classifier of the run's cohort (its heads and the teacher's own classifier) on the test
split twice, with the teacher side in float32 and as its bf16 copy, on the run's device (or ``--device``),
and prints each accuracy, the difference in points and the share of test images whose prediction changed.
Then it times the teacher side's forward in both precisions as the run's stages use it, at its training
batch (a live step) and at its evaluation batch (a cohort cache build), with the measurement
``python -m dih.bench`` makes (dih/teacher_side/measure.py), and says for each use whether the rule
``auto`` follows for this kind of device holds here: bf16 where it keeps every classifier within 0.1
points and is faster, float32 otherwise; where it does not, what to pass instead. The same determinism
settings as a run apply (``--no-deterministic`` as ``trainer.deterministic=false``).
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
from dih.teacher_side.measure import BUILD, TeacherSideSpeed, stage_batches, teacher_side_speed
from dih.teacher_side.precision import bf16_checked
from dih.teacher_side.side import Speed, TeacherSide
from dih.train.determinism import apply_determinism

TOLERANCE = 0.1  # points of accuracy bf16 may move any classifier of the cohort


@dataclass
class Check:
    rows: list[dict]  # per classifier: accuracies in fp32 and bf16, predictions changed (all in %)
    speed: TeacherSideSpeed  # the teacher side's forward in both precisions, live step and cache build

    @property
    def device(self) -> torch.device:
        return self.speed.device


@torch.no_grad()
def predictions(side: TeacherSide, loader: DeviceLoader) -> torch.Tensor:
    """``[classifiers, images]`` predicted classes of the whole cohort."""
    return torch.cat([torch.stack([z.argmax(1) for z in side(b.images).cohort]) for b in loader.epoch(0)], 1)


def run_batches(config: dict) -> dict[str, int]:
    """The batches the run's stages ran the teacher side at: its student's training batch (the method's
    ``batch_size`` where it sets one) and its evaluation batch, which a cohort cache build uses."""
    trainer, method = config.get("trainer") or {}, config.get("method") or {}
    return stage_batches(
        method.get("batch_size") or trainer.get("batch_size", 64), trainer.get("eval_batch_size", 512)
    )


def check(
    run_dir: Path, device: str | None = None, deterministic: bool = True, seconds: float = 1.0
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
    batches = run_batches(run.config)
    loader = DeviceLoader(
        data.test_images,
        data.test_labels,
        batch_size=batches[BUILD],
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
    side = run.config.get("teacher_side") or {}
    channels_last = side.get("channels_last", "auto")
    channels_last = target.type == "cuda" if channels_last == "auto" else bool(channels_last)
    images = next(iter(loader.epoch(0))).images
    speed = teacher_side_speed(
        teacher, heads, images, batches, deterministic=deterministic, channels_last=channels_last,
        seconds=seconds,
    )  # fmt: skip
    return Check(rows, speed)


def verdict(c: Check) -> str:
    """Whether ``auto``'s choice for this kind of device is right here, for a live step and for a cache
    build, and what to pass where it is not."""
    worst = max(abs(r["bf16"] - r["fp32"]) for r in c.rows)
    held, auto, kind = worst <= TOLERANCE, bf16_checked(c.device.type), c.device.type
    timed = "; ".join(
        f"{u.ratio:.2f}x float32's speed in a {u.use} at batch {u.batch_size} ({u.bf16:.1f} against "
        f"{u.fp32:.1f} images/s)"
        for u in c.speed.uses
    )
    found = (
        f"bf16 moved a classifier by at most {worst:.2f} points ({'within' if held else 'beyond'} "
        f"{TOLERANCE}) and ran the teacher side at {timed} on {c.device}"
    )
    best = {u.use: held and u.bf16 > u.fp32 for u in c.speed.uses}
    choice = "bf16" if auto else "float32"
    if all(b == auto for b in best.values()):
        return f"{found}: the rule holds here (teacher_side.bf16=auto runs {choice} on {kind})."
    if len(set(best.values())) == 1:
        right = next(iter(best.values()))
        return (
            f"{found}: teacher_side.bf16=auto runs {choice} on {kind}, which is wrong for this device; "
            f"pass teacher_side.bf16={str(right).lower()} for runs on it."
        )
    wrong = [use for use, b in best.items() if b != auto]
    return (
        f"{found}: teacher_side.bf16=auto runs {choice} on {kind}, right for the "
        f"{' and '.join(u for u in best if u not in wrong)} but wrong for the {' and '.join(wrong)}; "
        f"pass teacher_side.bf16={str(not auto).lower()} for runs whose teacher side runs as a {wrong[0]} "
        f"on it (one setting holds for both uses, and it is in the keys)."
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
    print("\n| use | batch | fp32 images/s | bf16 images/s | bf16 / fp32 |")
    print("|---|---:|---:|---:|---:|")
    for u in c.speed.uses:
        print(f"| {u.use} | {u.batch_size} | {u.fp32:.1f} | {u.bf16:.1f} | {u.ratio:.2f} |")
    print(f"\n{verdict(c)}")
    return 0

