"""The one measurement of the frozen teacher side's speed in float32 and in bf16, as stages use it.

A stage runs the teacher side at two batch sizes: a live student (or heads, hint, assistant) step at the
training batch (``trainer.batch_size``, or the method's ``batch_size``), and a cohort cache build at the
evaluation batch (``trainer.eval_batch_size``, dih/stages/cohort.py). At the paper's batch of 64 a GPU step is
bound by kernel launches, at 512 by arithmetic, so bf16 can lose at one and win at the other: both are timed,
and each verdict is about one of them. ``python -m dih.precision_check`` and ``python -m dih.bench`` both call
``teacher_side_speed``, so they time the same thing the same way: the sides a run builds (batch norm folded,
bf16 as a converted copy, channels-last as the run has it), under the run's determinism settings, with
warm-up steps at each batch size (cuDNN autotunes per shape when determinism is off) and the device
synchronised around every timed window.
"""

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from dih.models.heads import MountedHeads
from dih.teacher_side.side import Speed, TeacherSide
from dih.train.determinism import apply_determinism

LIVE, BUILD = "live step", "cache build"  # the two ways a stage runs the teacher side

Step = Callable[[], int]  # one step; returns how many images it processed


def best_rates(loops: dict[str, Step], seconds: float, repeats: int, warmup: int, device) -> dict[str, float]:
    """Best images/s of each loop over ``repeats`` windows of ``seconds``, after ``warmup`` steps each. The
    loops take turns window by window, so on a shared machine a busy spell spoils windows of several loops
    rather than every window of one, and the best window of each is a quiet one. On CUDA the device is
    synchronised after the warm-up and before and after every window: a window counts finished work only."""
    sync = torch.cuda.synchronize if torch.device(device).type == "cuda" else lambda: None
    for step in loops.values():
        for _ in range(warmup):
            step()
    sync()
    best = dict.fromkeys(loops, 0.0)
    for _ in range(repeats):
        for name, step in loops.items():
            sync()
            start, images = time.perf_counter(), 0
            while time.perf_counter() - start < seconds:
                images += step()
            sync()
            best[name] = max(best[name], images / (time.perf_counter() - start))
    return best


@dataclass(frozen=True)
class UseRates:
    """The teacher side's forward in both precisions for one use (``LIVE`` or ``BUILD``), images/s."""

    use: str
    batch_size: int
    fp32: float
    bf16: float

    @property
    def ratio(self) -> float:
        """bf16's speed as a multiple of float32's."""
        return self.bf16 / self.fp32


@dataclass(frozen=True)
class TeacherSideSpeed:
    """What ``teacher_side_speed`` measured, and how: one ``UseRates`` per use, live step first."""

    device: torch.device
    deterministic: bool
    channels_last: bool
    uses: tuple[UseRates, ...]

    def use(self, name: str) -> UseRates:
        return next(u for u in self.uses if u.use == name)


def stage_batches(batch_size: int, eval_batch_size: int) -> dict[str, int]:
    """The batch of each use: a live step's is the training batch, a cache build's the evaluation batch."""
    return {LIVE: int(batch_size), BUILD: int(eval_batch_size)}


def filled(images: torch.Tensor, n: int) -> torch.Tensor:
    """``n`` images: ``images`` repeated as often as needed (a small split still fills a build's batch)."""
    copies = -(-n // len(images))
    return images.repeat(copies, 1, 1, 1)[:n].contiguous()


def teacher_side_speed(
    teacher: nn.Module,
    heads: MountedHeads | None,
    images: torch.Tensor,
    batches: dict[str, int],
    *,
    deterministic: bool,
    channels_last: bool,
    seconds: float = 1.0,
    repeats: int = 3,
    warmup: int = 3,
) -> TeacherSideSpeed:
    """Time the teacher side (``teacher`` and ``heads``, on their device) in float32 and as its bf16 copy at
    each use's batch of ``batches`` (``stage_batches``), on normalised ``images`` (repeated to fill a batch).
    The determinism settings of a run with ``trainer.deterministic=deterministic`` are applied first (a
    caller applies them before building its models too, as a run does)."""
    device = next(teacher.parameters()).device
    apply_determinism(device.type, deterministic)
    sides = {
        bf16: TeacherSide(
            copy.deepcopy(teacher), copy.deepcopy(heads), Speed(bf16=bf16, channels_last=channels_last)
        )
        for bf16 in (False, True)
    }
    inputs = {use: filled(images.to(device), n) for use, n in batches.items()}

    def loop(bf16: bool, x: torch.Tensor) -> Step:
        def step() -> int:
            sides[bf16](x)
            return len(x)

        return step

    loops = {(use, bf16): loop(bf16, x) for use, x in inputs.items() for bf16 in (False, True)}
    rates = best_rates(loops, seconds, repeats, warmup, device)
    uses = tuple(UseRates(use, batches[use], rates[use, False], rates[use, True]) for use in inputs)
    return TeacherSideSpeed(device, deterministic, channels_last, uses)
