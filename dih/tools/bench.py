"""``python -m dih.bench``: images/s of the loader and of each stage's training step, each beside reference
loops a user would write, all measured in the same run and printed as a Markdown table of ratios.

The references: the *seed-style* loop (the original code's: torchvision's DataLoader with per-image PIL
transforms, the frozen teacher run with autograd on so the backward pass also runs through it, each head
evaluated twice) and the *careful plain* loop (the same DataLoader; teacher and heads once, under no_grad).
Every loop does the whole training step (forward, loss, backward, SGD step); the student loops use
``DIHLoss``; a last stage times every method's student step with its own loss and teacher side. Weights
are untrained (speed does not depend on them), but the teacher's batch-norm statistics come from a few
batches, so its activations have realistic magnitudes.

Every row runs on ``--device`` (CUDA timings synchronise the device around each timed window, warm-up
excluded) with the determinism settings a run applies (``--no-deterministic`` as
``trainer.deterministic=false``). The bf16 rows run the teacher side in bf16 whatever ``auto`` would choose,
and say where that bf16 is emulated. Below the table: DIH student stages per device-hour.
"""

import argparse
import copy
import dataclasses
import math
import os
import platform
import shlex
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import torch
from omegaconf import OmegaConf
from torch import nn
from torch.utils.data import DataLoader

from dih.config.groups import CONF, option_file
from dih.data.loader import DeviceLoader
from dih.data.synthetic import make_synthetic
from dih.device import has_native_bf16, resolve_device
from dih.errors import command
from dih.losses import LOSSES, CELoss, DIHLoss, HeadsLoss, HintLoss, Needs, build_loss, loss_class
from dih.losses.context import loss_context
from dih.models import LinearHeads, build_model, heads_class
from dih.models.heads import HeadsOnFrozen
from dih.teacher_side import cohort_cache
from dih.teacher_side.cache_policy import PAD
from dih.teacher_side.measure import TeacherSideSpeed, stage_batches, teacher_side_speed
from dih.teacher_side.precision import bf16_checked
from dih.teacher_side.side import Speed, TeacherSide
from dih.tools import bench_cache
from dih.tools.bench_loops import (
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
from dih.train.determinism import apply_determinism
from dih.train.engine import Task

# The batches a run uses by default (conf/trainer/default.yaml): a training step's, and the evaluation batch
# a cohort cache build runs the teacher side at (dih/stages/cohort.py).
TRAINER = OmegaConf.load(CONF / "trainer" / "default.yaml")
FULL = dict(teacher="res110", student="res8", batch_size=TRAINER.batch_size, classes=100, images=2048,
            cache_images=None, build_images=16, build_batch_size=TRAINER.eval_batch_size, train_size=45000,
            epochs=200, seconds=3.0, repeats=5, warmup=3)  # fmt: skip
QUICK = dict(teacher="res8", student="res8", batch_size=16, classes=10, images=64, cache_images=256,
             build_images=2, build_batch_size=32, train_size=64, epochs=200, seconds=0.05, repeats=1,
             warmup=1)  # fmt: skip
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
        apply_determinism(self.device.type, args.deterministic)  # as a run does, before any model
        torch.manual_seed(0)
        self.data = make_synthetic(args.classes, 32, args.images, test_size=args.classes, seed=0)
        cuda = self.device.type == "cuda"
        self.fp32 = Speed(channels_last=cuda)
        self.bf16 = Speed(bf16=True, channels_last=cuda)  # the bf16 rows run bf16, native or not
        self.bf16_name = (
            "bf16" if has_native_bf16(self.device) else f"bf16 (emulated: no native bf16 on {self.device})"
        )
        # The cache build runs as a run's cohort stage would on this device: with bf16 where `auto` has it.
        self.auto = self.bf16 if bf16_checked(self.device.type) else self.fp32
        self.auto_name = "bf16" if self.auto.bf16 else "fp32"
        self.teacher = calibrated(self.model(args.teacher), next(self.loader(256).epoch(1)).images)
        self.heads = LinearHeads.for_model(self.teacher, args.classes)
        self.student = self.model(args.student)
        self.precision: TeacherSideSpeed | None = None  # the teacher side's speeds, once forward_rows ran

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


def forward_rows(b: Bench) -> list[Row]:
    """The frozen teacher side's forward alone (teacher and DIH heads, as it runs: batch norm folded, bf16
    as a converted copy) in float32 and in bf16, at a live step's batch and at a cache build's: the same
    measurement as ``python -m dih.precision_check`` (dih/teacher_side/measure.py), kept on
    ``b.precision``."""
    a = b.args
    images = next(b.loader(a.build_batch_size).epoch(1)).images
    batches = stage_batches(a.batch_size, a.build_batch_size)
    b.precision = teacher_side_speed(
        b.teacher, b.heads, images, batches, deterministic=a.deterministic,
        channels_last=b.fp32.channels_last, seconds=a.seconds, repeats=a.repeats, warmup=a.warmup,
    )  # fmt: skip
    return precision_rows(b.precision, a.teacher, b.bf16_name)


def precision_rows(speed: TeacherSideSpeed, teacher: str, bf16_name: str = "bf16") -> list[Row]:
    """One stage per use (live step, cache build), its fp32 and bf16 rows, each ratio over fp32."""
    rows = []
    for u in speed.uses:
        stage, ref = f"teacher side forward ({teacher} + heads), {u.use}, batch {u.batch_size}", "fp32"
        rows += [Row(stage, ref, u.fp32, ref, ref), Row(stage, f"{bf16_name} copy", u.bf16, ref, ref)]
    return rows


def heads_rows(b: Bench) -> list[Row]:
    loops = {
        SEED: reference_heads_loop(*b.copies(b.teacher, b.heads), b.pil(), seed_style=True),
        PLAIN: reference_heads_loop(*b.copies(b.teacher, b.heads), b.pil(), seed_style=False),
    }
    for label, speed in (("fp32", b.fp32), (b.bf16_name, b.bf16)):
        task = Task(HeadsOnFrozen(b.side(speed, heads=False), *b.copies(b.heads)), HeadsLoss())
        loops[f"Task (heads), {label} teacher side"] = task_loop(task, b.loader())
    return [Row("heads (DIH linear)", loop, rate, SEED, PLAIN) for loop, rate in b.timed(loops).items()]


def student_rows(b: Bench, cache_dir: Path) -> list[Row]:
    """The DIH student: live teacher side in fp32 and bf16, and from a cohort cache of a real one's size."""
    a, n = b.args, b.args.cache_images or bench_cache.default_images(b.device)
    d, build_n = b.data, min(a.build_images, a.images)
    build_rate = bench_cache.timed_build(
        b.side(b.auto), d.train_images[:build_n], d.mean, d.std, cache_dir, a.build_batch_size
    )
    cache = bench_cache.stand_in_cache(cache_dir, n, len(b.heads) + 1, a.classes, b.device)
    ceiling = Task(*b.copies(b.student), CELoss())
    loops = {
        SEED: reference_student_loop(*b.copies(b.teacher, b.heads, b.student), b.pil(), seed_style=True),
        PLAIN: reference_student_loop(*b.copies(b.teacher, b.heads, b.student), b.pil(), seed_style=False),
        "ceiling: the student's CE step alone, no teacher side": task_loop(ceiling, b.loader()),
    }
    distill = lambda speed, cache=None, loader=None: task_loop(  # noqa: E731
        Task(*b.copies(b.student), DIHLoss(), b.side(speed), cache), loader or b.loader()
    )
    loops[LIVE_FP32] = distill(b.fp32)
    loops[f"Task (DIH), live {b.bf16_name} teacher side"] = distill(b.bf16)
    if a.compile:
        compiled = dataclasses.replace(b.bf16, compile=True)
        loops[f"Task (DIH), live {b.bf16_name} teacher side, torch.compile"] = distill(compiled)
    variants = cohort_cache.num_variants(PAD)
    cached = f"Task (DIH), cohort cache ({n:,} images x {variants} variants, {cache_size(cache)})"
    loops[cached] = distill(b.fp32, cache, bench_cache.cache_loader(d, n, a.batch_size, b.device))
    stage = f"DIH student ({a.teacher} -> {a.student})"
    rows = [Row(stage, loop, rate, SEED, PLAIN) for loop, rate in b.timed(loops).items()]
    build = f"cohort cache build, {b.auto_name} teacher side (images x {variants} variants / s)"
    return rows + [Row(stage, build, build_rate)]


LIVE_FP32 = "Task (DIH), live fp32 teacher side"


def cache_size(cache) -> str:
    gb = math.prod(cache.shape) * 2 / 1e9
    return f"{gb:.3g} GB, {'on the device' if cache.on_device else 'in host memory'}"


def method_config(name: str) -> dict:
    """``conf/method/<name>.yaml`` as plain data: the method's heads, loss and hint settings as a run gets
    them (read from the files: the bench composes no Hydra config)."""
    return option_file("method", name)


def timed_methods() -> list[tuple[str, dict, dict | None]]:
    """(row name, method config, hint layers or None): every method loss of dih/losses with the settings of
    its own method (else the first method under conf/method/ that uses it), then every hint stage (FitNets').
    TAKD's and FitNets' KD stages are KD's loss: one row. Derived, so a new method gets its row."""
    configs = {path.stem: method_config(path.stem) for path in sorted((CONF / "method").glob("*.yaml"))}
    found = []
    for loss in LOSSES:
        users = [name for name, config in configs.items() if config["loss"]["name"] == loss]
        if users:
            found.append((loss, configs[loss if loss in users else users[0]], None))
    hints = [(f"{name} (hint stage)", c, c["hint"]) for name, c in configs.items() if c.get("hint")]
    return found + hints


def method_rows(b: Bench) -> list[Row]:
    """Every method's student step (FitNets: its hint stage too) with the settings of its config and a live
    fp32 teacher side. CRD's memory banks span ``--train-size`` rows, as on the real training split: their
    product with each batch is part of its cost."""
    a, loops = b.args, {}
    for name, config, hint in timed_methods():
        student, teacher = b.copies(b.student, b.teacher)
        heads = config.get("heads")
        mounted = heads_class(heads).for_model(teacher, a.classes) if heads else None
        alone = not hint and loss_class(config["loss"]["name"]).needs is Needs.NOTHING
        side = None if alone else TeacherSide(teacher, mounted, b.fp32)
        data = b.data
        if name == "crd":  # a bank row per training image of the real split (labels cycle the classes)
            labels = torch.arange(a.train_size) % a.classes
            data = dataclasses.replace(b.data, train_labels=labels)
        context = loss_context(data, student, side, b.device, epochs=200)
        loss = HintLoss(context, **hint) if hint else build_loss(config["loss"], context)
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
    rows = loader_rows(b) + teacher_rows(b) + forward_rows(b) + heads_rows(b)
    with tempfile.TemporaryDirectory(prefix="dih-bench-") as cache_dir:
        rows += student_rows(b, Path(cache_dir))
    rows += method_rows(b)
    report = environment(args, argv, b.device) + "\n" + table(rows) + "\n" + per_hour(rows, args)
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
    (
        "--cache-images",
        int,
        "images of the cache the cached row reads (default 45,000 on CUDA, 8,192 on a CPU)",
    ),
    ("--build-images", int, "images of the real cache build that is timed"),
    ("--build-batch-size", int, "the teacher side's batch in a cohort cache build (trainer.eval_batch_size)"),
    ("--train-size", int, "training images: rows of CRD's memory banks, and of one student stage's epoch"),
    ("--epochs", int, "epochs of one student stage, for the runs per device-hour"),
    ("--seconds", float, "length of one timing window"),
    ("--repeats", int, "timing windows per loop, the best one kept"),
    ("--warmup", int, "untimed steps per loop before its first window"),
)


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m dih.bench", description=__doc__.split("\n\n")[0])
    for flag, kind, text in OPTIONS:
        default = FULL[flag[2:].replace("-", "_")]
        p.add_argument(flag, type=kind, help=text if default is None else f"{text} (default {default})")
    p.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    p.add_argument(
        "--no-deterministic",
        dest="deterministic",
        action="store_false",
        help="as trainer.deterministic=false",
    )
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
        f"- batch {args.batch_size} (a cache build's: {args.build_batch_size}), {args.classes} classes, "
        f"{args.images} synthetic 3x32x32 images; best of "
        f"{args.repeats} windows of {args.seconds:g} s per loop, the loops of a stage taking turns\n"
    )


def rate_text(rate: float) -> str:
    """One decimal, and at least three significant digits (an emulated bf16 row can be a few images/s)."""
    return f"{rate:.1f}" if rate >= 100 else f"{rate:.3g}"


def table(rows: list[Row]) -> str:
    rates = {(r.stage, r.loop): r.rate for r in rows}
    ratio = lambda r, ref: f"{r.rate / rates[r.stage, ref]:.2f}" if ref else ""  # noqa: E731
    lines = ["| stage | loop | images/s | x seed-style | x careful plain |", "|---|---|---:|---:|---:|"]
    lines += [
        f"| {r.stage} | {r.loop} | {rate_text(r.rate)} | {ratio(r, r.seed_ref)} | {ratio(r, r.plain_ref)} |"
        for r in rows
    ]
    return "\n".join(lines) + (
        "\n\nRatios divide by a loop of the same stage, measured in the same run. Loader: the seed-style "
        "reference is the DataLoader with 0 workers, the careful one with 2. Teacher: both are the plain CE "
        "loop. Teacher side forward: both are its fp32 forward at the same batch (the measurement "
        "`python -m dih.precision_check` makes). The cohort-cache row reads the "
        "logits of exactly the augmentation drawn; the build row counts teacher-side forwards (images x "
        "variants) per second, paid once per cohort.\n"
    )


def runs_per_hour(rate: float, epochs: int, train_images: int) -> float:
    """Student stages one device-hour holds at ``rate`` images/s: a stage is ``epochs x train_images / rate``
    seconds."""
    return 3600 / (epochs * train_images / rate)


def per_hour(rows: list[Row], args: argparse.Namespace) -> str:
    """The DIH student stage's rows (the ceiling aside) as runs per device-hour, and the cache build's
    one-off cost in hours."""
    stage = [r for r in rows if r.stage.startswith("DIH student") and r.seed_ref and "ceiling" not in r.loop]
    seed = next(r.rate for r in stage if r.loop == SEED)
    lines = [
        f"DIH student stages ({args.epochs} epochs x {args.train_size:,} training images) per device-hour:",
        "",
        "| loop | runs per device-hour | x seed-style |",
        "|---|---:|---:|",
    ]
    lines += [
        f"| {r.loop} | {runs_per_hour(r.rate, args.epochs, args.train_size):.3g} | {r.rate / seed:.2f} |"
        for r in stage
    ]
    build = next(r for r in rows if r.loop.startswith("cohort cache build"))
    variants = cohort_cache.num_variants(PAD)
    hours = args.train_size * variants / build.rate / 3600
    lines += [
        "",
        f"The cached runs need the cohort cache, built once per cohort and shared by every student of it: "
        f"{args.train_size:,} images x {variants} variants at {build.rate:.1f}/s, {hours:.3g} device-hours.",
    ]
    return "\n".join(lines) + "\n"


@command
def main(argv: list[str] | None = None) -> int:
    print(run(argv)[1])
    return 0
