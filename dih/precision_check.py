"""Does bf16 autocast change what the frozen teacher side predicts? The check behind ``teacher_side.bf16``.

    python -m dih.precision_check outputs/<run>      # a run whose chain reached its heads stage

Evaluates every classifier of the run's cohort (its heads and the teacher's own classifier) on the test
split twice, in float32 and under bf16 autocast, on the run's device, and prints each accuracy, the
difference in points and the share of test images whose prediction changed.
"""

import argparse
import sys
from pathlib import Path

import torch
from omegaconf import OmegaConf

from dih.artifacts import ArtifactStore
from dih.data import load_data
from dih.data.loader import DeviceLoader
from dih.errors import UserError
from dih.models.teacher_side import Speed, TeacherSide
from dih.runtime import resolve_device
from dih.stages.artifact_io import load_heads, load_model


@torch.no_grad()
def predictions(side: TeacherSide, loader: DeviceLoader) -> torch.Tensor:
    """``[classifiers, images]`` predicted classes of the whole cohort."""
    return torch.cat([torch.stack([z.argmax(1) for z in side(b.images).cohort]) for b in loader.epoch(0)], 1)


def compare(run_dir: Path) -> list[dict]:
    """Per classifier of the run's cohort: accuracy in fp32 and bf16, and the predictions that changed."""
    summary_path, config_path = run_dir / "summary.json", run_dir / "config.yaml"
    if not summary_path.exists():
        raise UserError(
            f"{run_dir} has no summary.json; point at a finished run directory written by run.py."
        )
    cfg = OmegaConf.load(config_path)
    stages = OmegaConf.load(summary_path)["stages"]
    if "teacher" not in stages:
        raise UserError(
            f"The run in {run_dir} has no teacher; pick a run of a method with one (dih, kd, ...)."
        )
    store, device = ArtifactStore(Path(cfg.artifacts.root)), resolve_device(cfg.device)
    found = {name: store.find(stages[name]["key"]) for name in ("teacher", "heads") if name in stages}
    if any(a is None for a in found.values()):
        raise UserError(
            f"The artifacts of {run_dir} are not under {store.root}; pass the run that made them."
        )
    teacher = load_model(found["teacher"], device)
    heads = load_heads(found["heads"], device) if "heads" in found else None
    data = load_data(cfg.dataset)
    loader = DeviceLoader(
        data.test_images,
        data.test_labels,
        batch_size=cfg.trainer.eval_batch_size,
        mean=data.mean,
        std=data.std,
        device=device,
        train=False,
    )
    labels = data.test_labels.to(device)
    fp32 = predictions(TeacherSide(teacher, heads, Speed()), loader)
    bf16 = predictions(TeacherSide(teacher, heads, Speed(bf16=True)), loader)
    names = [f"head{i}" for i in range(1, len(fp32))] + ["teacher"]
    return [
        {
            "classifier": name,
            "fp32": 100 * (a == labels).float().mean().item(),
            "bf16": 100 * (b == labels).float().mean().item(),
            "changed": 100 * (a != b).float().mean().item(),
        }
        for name, a, b in zip(names, fp32, bf16, strict=True)
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m dih.precision_check", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("run_dir", type=Path)
    args = parser.parse_args(argv)
    try:
        rows = compare(args.run_dir)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print("| classifier | fp32 acc | bf16 acc | difference (points) | predictions changed |")
    print("|---|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['classifier']} | {r['fp32']:.2f} | {r['bf16']:.2f} | {r['bf16'] - r['fp32']:+.2f} | "
            f"{r['changed']:.2f}% |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
