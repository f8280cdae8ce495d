"""``python -m dih.bench``: images/s of the loader and of each stage's training step, each beside reference
loops a user would write, all measured in the same run and printed as a Markdown table of ratios.

The references: the *seed-style* loop (the original code's: torchvision's DataLoader with per-image PIL
transforms, the frozen teacher run with autograd on so the backward pass also runs through it, each head
evaluated twice) and the *careful plain* loop (the same DataLoader; teacher and heads once, under no_grad).
Every loop does the whole training step (forward, loss, backward, SGD step); the student loops use
``DIHLoss``; a last stage times every method's student step with its own loss and teacher side. Weights
are untrained (speed does not depend on them), but the teacher's batch-norm statistics come from a few
batches, so its activations have realistic magnitudes.
"""

import argparse
import copy
import dataclasses
import os
import platform
import shlex
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import torch
from omegaconf import OmegaConf
from torch import nn
from torch.utils.data import DataLoader

from dih import cohort_cache
from dih.artifacts import ArtifactStore
from dih.bench_loops import (
    PILImages,
    Row,
    Step,
    cycle,
    device_loader_loop,
    measure,
    plain_ce_loop,
    reference_heads_loop,
    reference_student_loop,
    task_loop,
    torchvision_loader_loop,
)
from dih.cohort_cache import CohortCache
from dih.compose import CONF
from dih.data.loader import DeviceLoader
from dih.data.synthetic import make_synthetic
from dih.engine import Task
from dih.losses import CELoss, DIHLoss, HeadsLoss, HintLoss, build_loss
from dih.losses.context import loss_context
from dih.models import LinearHeads, build_model, heads_class
from dih.models.heads import HeadsOnFrozen
from dih.models.teacher_side import Speed, TeacherSide
from dih.runtime import bf16_checked, resolve_device
from dih.stages.cohort import PAD

FULL = dict(teacher="res110", student="res8", batch_size=64, classes=100, images=2048, cache_images=256,
            train_size=45000, seconds=3.0, repeats=5, warmup=2)  # fmt: skip
QUICK = dict(teacher="res8", student="res8", batch_size=16, classes=10, images=64, cache_images=4,
             train_size=64, seconds=0.05, repeats=1, warmup=1)  # fmt: skip
# The two reference loops of the heads and student stages.
SEED, PLAIN = (
    "seed-style: DataLoader, autograd through teacher, heads x2",
    "careful plain: DataLoader, no_grad",
)


# ---- the stages --------------------------------------------------------------------------------------------


def calibrated(model: nn.Module, images: torch.Tensor) -> nn.Module:
    """``model`` in eval mode, its batch-norm running statistics averaged over ``images``."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.momentum = None  # a plain average
    with torch.no_grad():
        for chunk in images.split(256)[:4]:
            model.train()(chunk)
    return model.eval()


class Bench:
    """What the measurements share: settings, data, the template models (each loop trains its own copies)."""

    def __init__(self, args: argparse.Namespace):
        self.args, self.device = args, resolve_device(args.device)
        torch.manual_seed(0)
        self.data = make_synthetic(args.classes, 32, args.images, test_size=args.classes, seed=0)
        cuda = self.device.type == "cuda"
        self.fp32 = Speed(channels_last=cuda)
        self.bf16 = Speed(bf16=bf16_checked(self.device.type), channels_last=cuda)
        # What the "bf16" rows run: bf16 where `auto` turns it on for this device, else say they run fp32.
        self.bf16_name = "bf16" if self.bf16.bf16 else "bf16 auto (off here, so fp32)"
        self.teacher = calibrated(self.model(args.teacher), next(self.loader(256).epoch(1)).images)
        self.heads = LinearHeads.for_model(self.teacher, args.classes)
        self.student = self.model(args.student)

    def model(self, name: str) -> nn.Module:
        return build_model(name, self.args.classes).to(self.device)

    def copies(self, *modules: nn.Module) -> list[nn.Module]:
        return [copy.deepcopy(m) for m in modules]

    def side(self, speed: Speed, heads: bool = True) -> TeacherSide:
        return TeacherSide(copy.deepcopy(self.teacher), copy.deepcopy(self.heads) if heads else None, speed)

    def timed(self, loops: dict[str, Step]) -> dict[str, float]:
        return measure(loops, self.args.seconds, self.args.repeats, self.args.warmup, self.device)

    def loader(self, batch_size: int | None = None, n: int | None = None) -> DeviceLoader:
        """A training DeviceLoader over the first ``n`` images (all by default)."""
        d, size = self.data, batch_size or self.args.batch_size
        kw = dict(mean=d.mean, std=d.std, device=self.device, train=True)
        return DeviceLoader(d.train_images[:n], d.train_labels[:n], batch_size=size, **kw)

    def pil(self, workers: int = 0) -> Iterator:
        """Endless (images, labels) from torchvision's DataLoader over PIL images, moved to the device."""
        d = self.data
        dataset = PILImages(d.train_images, d.train_labels, d.mean, d.std)
        kw = dict(shuffle=True, num_workers=workers, persistent_workers=workers > 0)
        loader = DataLoader(dataset, self.args.batch_size, **kw)
        return ((x.to(self.device), y.to(self.device)) for x, y in cycle(lambda epoch: loader))


def loader_rows(b: Bench) -> list[Row]:
    tv0, tv2 = "torchvision DataLoader, PIL transforms, 0 workers", "torchvision DataLoader, 2 workers"
    loops = {tv0: torchvision_loader_loop(b.pil()), tv2: torchvision_loader_loop(b.pil(workers=2))}
    loops["DeviceLoader (uint8 on device, batched crop/flip/normalise)"] = device_loader_loop(b.loader())
    return [Row("loader", name, rate, tv0, tv2) for name, rate in b.timed(loops).items()]


def teacher_rows(b: Bench) -> list[Row]:
    ref, name = "careful plain: DataLoader + CE", b.args.teacher
    loops = {ref: plain_ce_loop(b.model(name), b.pil())}
    loops["Task (CE) + DeviceLoader"] = task_loop(Task(b.model(name), CELoss()), b.loader())
    return [Row(f"teacher ({name})", loop, rate, ref, ref) for loop, rate in b.timed(loops).items()]


def heads_rows(b: Bench) -> list[Row]:
    loops = {
        SEED: reference_heads_loop(*b.copies(b.teacher, b.heads), b.pil(), seed_style=True),
        PLAIN: reference_heads_loop(*b.copies(b.teacher, b.heads), b.pil(), seed_style=False),
    }
    for label, speed in (("fp32", b.fp32), (b.bf16_name, b.bf16)):
        task = Task(HeadsOnFrozen(b.side(speed, heads=False), *b.copies(b.heads)), HeadsLoss())
        loops[f"Task (heads), {label} teacher side"] = task_loop(task, b.loader())
    return [Row("heads (DIH linear)", loop, rate, SEED, PLAIN) for loop, rate in b.timed(loops).items()]


def build_cache(b: Bench, n: int, root: Path) -> tuple[CohortCache, float]:
    """The cohort cache of the first ``n`` images, built into an artifact store as the pipeline does, and
    the build's teacher-side forwards (images x variants) per second."""
    d, side, started = b.data, b.side(b.bf16), time.perf_counter()

    def build(work: Path) -> tuple[dict, dict]:
        return cohort_cache.build(side, d.train_images[:n], d.mean, d.std, PAD, work, batch_size=512), {}

    artifact, _ = ArtifactStore(root).get_or_build("cohort-bench", {}, build)
    rate = n * cohort_cache.num_variants(PAD) / (time.perf_counter() - started)
    return CohortCache(artifact, b.device), rate


def student_rows(b: Bench, cache_dir: Path) -> list[Row]:
    """The DIH student: live teacher side in fp32 and bf16, and from the cohort cache."""
    a, n = b.args, min(b.args.cache_images, b.args.images)
    cache, build_rate = build_cache(b, n, cache_dir)
    ceiling = Task(*b.copies(b.student), CELoss())
    loops = {
        SEED: reference_student_loop(*b.copies(b.teacher, b.heads, b.student), b.pil(), seed_style=True),
        PLAIN: reference_student_loop(*b.copies(b.teacher, b.heads, b.student), b.pil(), seed_style=False),
        "ceiling: the student's CE step alone, no teacher side": task_loop(ceiling, b.loader()),
    }
    distill = lambda speed, cache=None, n=None: task_loop(  # noqa: E731
        Task(*b.copies(b.student), DIHLoss(), b.side(speed), cache), b.loader(n=n)
    )
    loops["Task (DIH), live fp32 teacher side"] = distill(b.fp32)
    loops[f"Task (DIH), live {b.bf16_name} teacher side"] = distill(b.bf16)
    if a.compile:
        compiled = Speed(b.bf16.bf16, b.bf16.channels_last, compile=True)
        loops[f"Task (DIH), live {b.bf16_name} teacher side, torch.compile"] = distill(compiled)
    loops[f"Task (DIH), cohort cache ({n} images)"] = distill(b.bf16, cache, n)
    stage = f"DIH student ({a.teacher} -> {a.student})"
    rows = [Row(stage, loop, rate, SEED, PLAIN) for loop, rate in b.timed(loops).items()]
    build = f"cohort cache build, {b.bf16_name} (images x {cohort_cache.num_variants(PAD)} variants / s)"
    return rows + [Row(stage, build, build_rate)]


def method_config(name: str) -> dict:
    """``conf/method/<name>.yaml`` as plain data: the method's heads, loss and hint settings as a run gets
    them (read directly: the bench composes no Hydra config)."""
    return OmegaConf.to_container(OmegaConf.load(CONF / "method" / f"{name}.yaml"), resolve=True)


def method_rows(b: Bench) -> list[Row]:
    """Every method's student step (FitNets: its hint stage; its KD stage, TAKD's and KD's are one loss) with
    the settings of its config and a live fp32 teacher side. CRD's memory banks span ``--train-size`` rows,
    as on the real training split: their product with each batch is part of its cost."""
    a, loops = b.args, {}
    for method in ("ce", "kd", "dih", "at", "crd", "tofd", "mhkd", "fitnets"):
        config = method_config(method)
        student, teacher = b.copies(b.student, b.teacher)
        heads = config.get("heads")
        mounted = heads_class(heads).for_model(teacher, a.classes) if heads else None
        side = TeacherSide(teacher, mounted, b.fp32) if "teacher" in config["stages"][:-1] else None
        data = b.data
        if method == "crd":  # a bank row per training image of the real split (labels cycle the classes)
            labels = torch.arange(a.train_size) % a.classes
            data = dataclasses.replace(b.data, train_labels=labels)
        context = loss_context(data, student, side, b.device, epochs=200)
        hint = config.get("hint")
        loss = HintLoss(context, **hint) if hint else build_loss(config["loss"], context)
        name = "fitnets (hint stage)" if hint else method
        task = Task(student, loss.to(b.device), side, evaluates=not hint)
        where = "no teacher side" if side is None else "live fp32 teacher side"
        loops[f"Task ({name}), {where}"] = task_loop(task, b.loader())
    stage = f"student by method ({a.teacher} -> {a.student})"
    return [Row(stage, loop, rate) for loop, rate in b.timed(loops).items()]


def run(argv: list[str] | None = None) -> tuple[list[Row], str]:
    """Every measurement; returns the rows and the report (environment, command, table)."""
    args = parse(argv)
    torch.set_num_threads(args.threads)
    b = Bench(args)
    rows = loader_rows(b) + teacher_rows(b) + heads_rows(b)
    with tempfile.TemporaryDirectory(prefix="dih-bench-") as cache_dir:
        rows += student_rows(b, Path(cache_dir))
    rows += method_rows(b)
    report = environment(args, argv, b.device) + "\n" + table(rows)
    if args.out:
        Path(args.out).write_text(report)
    return rows, report


# ---- the command line and the report ----------------------------------------------------------------------

OPTIONS = (  # (flag, type, help); the default comes from FULL, or from QUICK with --quick
    ("--teacher", str, "zoo name of the teacher"),
    ("--student", str, "zoo name of the student"),
    ("--batch-size", int, "training batch size"),
    ("--classes", int, "number of classes"),
    ("--images", int, "synthetic 3x32x32 uint8 training images"),
    ("--cache-images", int, "how many of them the cohort cache covers (its build is timed too)"),
    ("--train-size", int, "rows of CRD's memory banks (the training split it would span)"),
    ("--seconds", float, "length of one timing window"),
    ("--repeats", int, "timing windows per loop, the best one kept"),
    ("--warmup", int, "untimed steps per loop before its first window"),
)


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m dih.bench", description=__doc__.split("\n\n")[0])
    for flag, kind, text in OPTIONS:
        p.add_argument(flag, type=kind, help=f"{text} (default {FULL[flag[2:].replace('-', '_')]})")
    p.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    p.add_argument("--compile", action="store_true", help="also time a torch.compile'd live teacher side")
    p.add_argument("--out", help="also write the report (environment, command, table) to this file")
    p.add_argument("--quick", action="store_true", help="tiny settings, for tests (seconds, not minutes)")
    args = p.parse_args(argv)
    for name, default in (QUICK if args.quick else FULL).items():
        if getattr(args, name) is None:
            setattr(args, name, default)
    return args


def environment(args: argparse.Namespace, argv: list[str] | None, device: torch.device) -> str:
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    cpu = next((x.split(":", 1)[1].strip() for x in info.splitlines() if x.startswith("model name")), "?")
    gpu = f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""
    command = shlex.join(["python", "-m", "dih.bench", *(sys.argv[1:] if argv is None else argv)])
    return (
        f"- torch {torch.__version__}, python {platform.python_version()}, {torch.get_num_threads()} "
        f"threads, device {device}{gpu}, CPU {cpu} ({os.cpu_count()} cores)\n- command: `{command}`\n"
        f"- batch {args.batch_size}, {args.classes} classes, {args.images} synthetic 3x32x32 images; best of "
        f"{args.repeats} windows of {args.seconds:g} s per loop, the loops of a stage taking turns\n"
    )


def table(rows: list[Row]) -> str:
    rates = {(r.stage, r.loop): r.rate for r in rows}
    ratio = lambda r, ref: f"{r.rate / rates[r.stage, ref]:.2f}" if ref else ""  # noqa: E731
    lines = ["| stage | loop | images/s | x seed-style | x careful plain |", "|---|---|---:|---:|---:|"]
    lines += [
        f"| {r.stage} | {r.loop} | {r.rate:.1f} | {ratio(r, r.seed_ref)} | {ratio(r, r.plain_ref)} |"
        for r in rows
    ]
    return "\n".join(lines) + (
        "\n\nRatios divide by a loop of the same stage, measured in the same run. Loader: the seed-style "
        "reference is the DataLoader with 0 workers, the careful one with 2. Teacher: both are the plain CE "
        "loop. The cohort-cache row reads the logits of exactly the augmentation drawn; the build row counts "
        "teacher-side forwards (images x variants) per second, paid once per cohort.\n"
    )


def main(argv: list[str] | None = None) -> None:
    print(run(argv)[1])


if __name__ == "__main__":
    main()
