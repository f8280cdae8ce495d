"""The one epoch loop every stage runs: train, evaluate, log, checkpoint, resume.

A stage hands the engine a ``Task``: the modules that learn, how a batch becomes a loss, and which
classifiers to evaluate. Every random draw of epoch ``e`` (shuffle, crops, flips, a loss's negative
samples) comes from generators seeded by ``(seed, e)``, and the checkpoint written after each epoch holds
the learners, optimiser and schedule, so a stage killed anywhere and started again ends with exactly the
weights of one that never stopped: on the same device model, software versions and (on CPU) thread count,
with deterministic kernels on CUDA (dih/train/determinism.py). The checkpoint records those; resuming
elsewhere warns that the bits will differ.
"""

import json
import logging
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn
from tqdm import tqdm

from dih.data import ImageData
from dih.data.loader import Batch, DeviceLoader, epoch_seed, split_loader
from dih.errors import UserError
from dih.store import atomic
from dih.train import metrics as m
from dih.train.compiled_step import RECORD, CompiledStep, tensor_learning_rate
from dih.train.determinism import differences, environment

log = logging.getLogger(__name__)

CHECKPOINT = "checkpoint.pt"


# Bump when the loop changes what training produces (the optimiser step, the schedule, what is seeded how):
# every trained artifact's key holds it, so no artifact of the old loop is reused (docs/versions.md).
VERSION = 1

OPTIMIZERS = ("sgd",)  # SPEC s.6; the config schema refuses anything else


@dataclass(frozen=True)
class Recipe:
    """The optimiser and schedule of one stage (SPEC s.6): all of it changes what training produces."""

    epochs: int
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    milestones: tuple[int, ...] = (60, 120, 180)
    gamma: float = 0.1
    batch_size: int = 64
    optimizer: str = "sgd"

    def __post_init__(self) -> None:
        object.__setattr__(self, "milestones", tuple(int(e) for e in self.milestones))
        if self.optimizer not in OPTIMIZERS:
            raise UserError(
                f"trainer.optimizer is '{self.optimizer}'; the implemented optimisers are: "
                f"{', '.join(OPTIMIZERS)}."
            )


@dataclass
class StepOutput:
    loss: Tensor
    parts: dict[str, Tensor]
    logits: Tensor  # the trained model's logits, for training accuracy


class Task:
    """What every stage trains: ``model`` (and the loss's own parameters) learn against an optional frozen
    teacher side, whose outputs come from running it once per batch without autograd or from the cohort
    cache. The model returns a ``ModelOutput``; its ``heads`` (the heads stage) or else its ``logits`` are
    the classifiers evaluated. ``evaluates=False`` for a model that classifies nothing yet (FitNets' hint
    stage). ``lr_groups``: modules that learn at their own learning rate (the heads stage's search), each
    scaled by the schedule as the recipe's; ``head_names``: what the model's heads are called in the metrics
    (``head1``, ``head2``... by default)."""

    def __init__(
        self,
        model: nn.Module,
        loss: nn.Module,
        side: nn.Module | None = None,
        cache=None,
        *,
        evaluates: bool = True,
        lr_groups: list[tuple[nn.Module, float]] | None = None,
        head_names: list[str] | None = None,
    ):
        self.model, self.loss, self.evaluates = model, loss, evaluates
        self.lr_groups, self.head_names = lr_groups, head_names
        self.learner = nn.ModuleDict({"model": model, "loss": loss})  # what learns and is checkpointed
        self.frozen, self.cache = side, cache  # never checkpointed, never in the optimiser

    def loss_of(self, batch: Batch, cached=None) -> StepOutput:
        """The loss of one batch against the teacher's ``cached`` outputs, or else the live teacher side's
        (the part of a step that is compiled whole: dih/train/compiled_step.py)."""
        teacher = cached if cached is not None or self.frozen is None else self.frozen(batch.images)
        out = self.model(batch.images)
        total, parts = self.loss(out, teacher, batch)
        return StepOutput(total, parts, out.logits)

    def step(self, batch: Batch, compiled: CompiledStep | None = None) -> StepOutput:
        """The loss of one batch, through the ``compiled`` step if given; the cache's gather stays eager."""
        cached = self.cache(batch) if self.cache is not None else None
        return compiled.loss(batch, cached) if compiled is not None else self.loss_of(batch, cached)

    def parameter_groups(self) -> list[dict]:
        """The optimiser's parameter groups: every trainable parameter at the recipe's learning rate, or one
        group per ``lr_groups`` module at its own."""
        if self.lr_groups is None:
            return [{"params": [p for p in self.learner.parameters() if p.requires_grad]}]
        return [
            {"params": [p for p in module.parameters() if p.requires_grad], "lr": lr}
            for module, lr in self.lr_groups
        ]

    def predict(self, images: Tensor) -> dict[str, Tensor]:
        """Logits of each classifier to evaluate, by name."""
        out = self.model(images)
        if out.heads:
            names = self.head_names or [m.head(i) for i in range(1, len(out.heads) + 1)]
            return dict(zip(names, out.heads, strict=True))
        return {m.MAIN: out.logits}

    def train_mode(self) -> None:
        self.learner.train()
        if self.frozen is not None:
            self.frozen.eval()


def fit(
    task: Task,
    data: ImageData,
    recipe: Recipe,
    device: torch.device,
    work_dir: Path,
    *,
    seed: int,
    stage: str,
    eval_batch_size: int = 512,
    on_epoch: Callable[[dict], None] = lambda line: None,
    progress: bool | None = None,
    compiled: bool = False,
) -> dict:
    """Train ``task`` per ``recipe``, resuming from ``work_dir``'s checkpoint; return the stage summary.
    ``compiled``: the whole training step and evaluation run through torch.compile
    (dih/train/compiled_step.py)."""
    train = DeviceLoader(
        data.train_images,
        data.train_labels,
        batch_size=recipe.batch_size,
        mean=data.mean,
        std=data.std,
        device=device,
        train=True,
        seed=seed,
    )
    evals = {
        split: split_loader(data, split, eval_batch_size, device)
        for split in ("val", "test")
        if len(getattr(data, f"{split}_labels")) and task.evaluates
    }
    optimizer = torch.optim.SGD(
        task.parameter_groups(),
        lr=recipe.lr,
        momentum=recipe.momentum,
        nesterov=recipe.nesterov,
        weight_decay=recipe.weight_decay,
    )
    if compiled:
        tensor_learning_rate(optimizer, device)  # before the schedule, which then fills it in place
    schedule = torch.optim.lr_scheduler.MultiStepLR(optimizer, recipe.milestones, recipe.gamma)
    # Where these bits are computed (dih/train/determinism.py); a compiled step rounds differently from an
    # eager one, so it is recorded too (only when on: checkpoints of eager runs keep their record unchanged).
    setup = {**environment(device), **({"trainer.compile": RECORD} if compiled else {})}
    history = _resume(work_dir / CHECKPOINT, task, optimizer, schedule, stage, setup)
    show_bar = sys.stderr.isatty() if progress is None else progress
    step = None
    if compiled:
        step = CompiledStep(task, optimizer, recipe.batch_size, eval_batch_size, device.type)

    for epoch in range(len(history) + 1, recipe.epochs + 1):
        torch.manual_seed(epoch_seed(seed, epoch, "task"))  # the task's own draws (CRD's negatives)
        started = time.perf_counter()
        line = {"stage": stage, m.EPOCH: epoch, "lr": float(optimizer.param_groups[0]["lr"])}
        line.update(_train_epoch(task, step, train, optimizer, epoch, show_bar, stage))
        train_seconds = time.perf_counter() - started
        schedule.step()
        for split, loader in evals.items():
            line.update(_evaluate(task, step, loader, split))
        line[m.EPOCH_SECONDS] = round(time.perf_counter() - started, 3)
        line[m.IMAGES_PER_S] = round(train.num_samples / train_seconds, 1)
        history.append(line)
        _save(work_dir, task, optimizer, schedule, history, setup)
        on_epoch(line)
        log.info("%s epoch %d/%d  %s", stage, epoch, recipe.epochs, _brief(line))
    return summarize(history)


def _train_epoch(
    task: Task,
    compiled: CompiledStep | None,
    loader: DeviceLoader,
    optimizer,
    epoch: int,
    show_bar: bool,
    stage: str,
) -> dict:
    task.train_mode()
    totals: dict[str, Tensor] = {}
    correct = torch.zeros((), device=loader.device)
    for batch in tqdm(
        loader.epoch(epoch), total=len(loader), desc=f"{stage} {epoch}", leave=False, disable=not show_bar
    ):
        # Gradients dropped before the forward, not after: the same in eager code, and under CUDA graphs no
        # gradient of the previous step is still held when the next step's replay may reuse its memory.
        optimizer.zero_grad(set_to_none=True)
        out = task.step(batch, compiled)
        out.loss.backward()
        if compiled is not None:
            compiled.optimizer_step()
        else:
            optimizer.step()
        n = len(batch.labels)
        for name, value in {"loss": out.loss, **out.parts}.items():
            totals[name] = totals.get(name, 0.0) + value.detach().float() * n
        correct += (out.logits.argmax(1) == batch.labels).sum()
    means = {m.train(name): (value / loader.num_samples).item() for name, value in totals.items()}
    if not math.isfinite(means[m.TRAIN_LOSS]):
        raise UserError(
            f"The {stage} loss became {means[m.TRAIN_LOSS]} in epoch {epoch}; lower trainer.lr (or a loss "
            "weight) and run again: a changed setting is a new artifact key, so each stage it reaches trains "
            "from its first epoch (trainer.lr reaches every trained stage, the teacher too; a loss weight "
            "only its own stage) and the others are reused from the store."
        )
    means[m.TRAIN_ACC] = 100.0 * correct.item() / loader.num_samples
    return means


@torch.no_grad()
def _evaluate(task: Task, compiled: CompiledStep | None, loader: DeviceLoader, split: str) -> dict:
    task.learner.eval()
    if task.frozen is not None:
        task.frozen.eval()
    correct: dict[str, Tensor] = {}
    predict = compiled.predict if compiled is not None else task.predict
    for batch in loader.epoch(0):
        for name, logits in predict(batch.images).items():
            correct[name] = correct.get(name, 0) + (logits.argmax(1) == batch.labels).sum()
    accs = {name: 100.0 * hits.item() / loader.num_samples for name, hits in correct.items()}
    line = {m.acc(name, split): acc for name, acc in accs.items()}
    if m.MAIN not in accs:  # a stage of several classifiers (the heads) selects on their mean
        line[m.acc(m.MAIN, split)] = sum(accs.values()) / len(accs)
    return line


def summarize(history: list[dict]) -> dict:
    """Final figures: test accuracy at the last epoch and at the epoch of best validation accuracy (the
    first epoch reaching it); the test set never selects anything."""
    last = history[-1]
    summary = {
        m.EPOCHS: len(history),
        m.TOTAL_SECONDS: round(sum(h[m.EPOCH_SECONDS] for h in history), 1),
        m.IMAGES_PER_S: round(sum(h[m.IMAGES_PER_S] for h in history) / len(history), 1),
    }
    classifiers = m.classifiers_in(last)
    summary.update({m.final(c, m.LAST): last[m.acc(c, "test")] for c in classifiers})
    if m.acc(m.MAIN, "val") in last:
        best = max(history, key=lambda h: h[m.acc(m.MAIN, "val")])  # max keeps the first on ties
        summary[m.BEST_VAL_EPOCH] = best[m.EPOCH]
        summary[m.VAL_ACC_BEST] = best[m.acc(m.MAIN, "val")]
        summary.update({m.final(c, m.BEST_VAL): best[m.acc(c, "test")] for c in classifiers})
    return summary


def _save(work_dir: Path, task: Task, optimizer, schedule, history: list[dict], setup: dict) -> None:
    state = {
        "learner": task.learner.state_dict(),
        "optimizer": optimizer.state_dict(),
        "schedule": schedule.state_dict(),
        "history": history,
        "environment": setup,
    }
    atomic.torch_save(work_dir / CHECKPOINT, state)
    atomic.write_bytes(work_dir / "metrics.jsonl", "".join(json.dumps(h) + "\n" for h in history).encode())


def _resume(path: Path, task: Task, optimizer, schedule, stage: str, setup: dict) -> list[dict]:
    if not path.exists():
        return []
    state = torch.load(path, map_location="cpu", weights_only=True)
    try:
        task.learner.load_state_dict(state["learner"])
    except RuntimeError as exc:
        raise UserError(
            f"The checkpoint {path} belongs to another model than this {stage} stage; delete it to start "
            "over."
        ) from exc
    optimizer.load_state_dict(state["optimizer"])
    schedule.load_state_dict(state["schedule"])
    log.info("%s: resuming after epoch %d from %s", stage, len(state["history"]), path)
    recorded = state.get("environment")  # absent from checkpoints written before it was recorded
    changed = differences(recorded, setup) if recorded is not None else []
    if changed:
        log.warning(
            "%s: the checkpoint was written on another setup (%s); the stage resumes, but its result will "
            "not be bit-identical to an uninterrupted run's.",
            stage,
            "; ".join(changed),
        )
    return state["history"]


def _brief(line: dict) -> str:
    keys = (m.TRAIN_LOSS, m.TRAIN_ACC, m.acc(m.MAIN, "val"), m.acc(m.MAIN, "test"), m.IMAGES_PER_S)
    return "  ".join(f"{k}={line[k]:.4g}" for k in keys if k in line)
