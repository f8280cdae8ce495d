"""The timed loops of ``python -m dih.bench``: a shared timing helper, the project's own steps, and the
reference loops a user would write (seed-style and careful plain)."""

import itertools
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from torch.utils.data import Dataset
from torchvision import transforms

from dih.data.loader import DeviceLoader
from dih.models import LinearHeads

# The timing helper and the step type are the teacher side measurement's, so every timed row is timed alike.
from dih.teacher_side.measure import Step  # noqa: F401
from dih.teacher_side.measure import best_rates as measure  # noqa: F401
from dih.train.engine import Recipe


@dataclass
class Row:
    stage: str
    loop: str
    rate: float  # images/s
    seed_ref: str | None = None  # the loop of the same stage that the "x seed-style" ratio divides by
    plain_ref: str | None = None  # likewise for "x careful plain"


def cycle(epochs: Callable[[int], Iterable]) -> Iterator:
    """Endless batches: epochs 1, 2, ... of ``epochs(e)``."""
    return itertools.chain.from_iterable(map(epochs, itertools.count(1)))


def sgd(module: nn.Module) -> torch.optim.SGD:
    """The stages' optimiser (the default recipe) over ``module``'s trainable parameters."""
    r = Recipe(epochs=1)
    params = [p for p in module.parameters() if p.requires_grad]
    return torch.optim.SGD(params, r.lr, r.momentum, weight_decay=r.weight_decay, nesterov=r.nesterov)


def update(optimizer: torch.optim.Optimizer, loss: torch.Tensor) -> None:
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


class PILImages(Dataset):
    """PIL images with torchvision's per-image CIFAR training transforms."""

    def __init__(self, images_u8: torch.Tensor, labels: torch.Tensor, mean, std):
        self.images = [Image.fromarray(x.permute(1, 2, 0).numpy()) for x in images_u8]
        self.labels = labels.tolist()
        crop, flip = transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip()
        self.transform = transforms.Compose(
            [crop, flip, transforms.ToTensor(), transforms.Normalize(mean, std)]
        )

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        return self.transform(self.images[i]), self.labels[i]


# ---- the measured loops: the project's own, then the references -----------------------------------------


def device_loader_loop(loader: DeviceLoader) -> Step:
    """Batches only: normalised, augmented images and their labels on the device."""
    batches = cycle(loader.epoch)
    return lambda: len(next(batches).labels)


def forward_loop(forward: Callable[[torch.Tensor], object], images: torch.Tensor) -> Step:
    """A forward pass alone (a frozen teacher side's), on the same batch each time."""

    def step() -> int:
        forward(images)
        return len(images)

    return step


def torchvision_loader_loop(batches: Iterator) -> Step:
    return lambda: len(next(batches)[1])


def task_loop(task, loader: DeviceLoader) -> Step:
    """A stage's own step as ``engine.fit`` runs it: ``task.step(batch)``, backward, SGD step."""
    batches, optimizer = cycle(loader.epoch), sgd(task.learner)
    task.train_mode()

    def step() -> int:
        batch = next(batches)
        update(optimizer, task.step(batch).loss)
        return len(batch.labels)

    return step


def plain_ce_loop(model: nn.Module, batches: Iterator) -> Step:
    """The teacher stage by hand: DataLoader batches, cross-entropy, SGD."""
    optimizer = sgd(model.train())

    def step() -> int:
        x, y = next(batches)
        update(optimizer, F.cross_entropy(model(x).logits, y))
        return len(y)

    return step


def teacher_pass(teacher: nn.Module, heads: LinearHeads, x: torch.Tensor, seed_style: bool):
    """(teacher output, head logits). Seed-style as the original: autograd on (the teacher's parameters
    require grad, so the backward pass runs through it) and every head evaluated a second time."""
    with torch.set_grad_enabled(seed_style):
        out = teacher(x)
    head_logits = heads(out.features)
    if seed_style:
        heads(out.features)
    return out, head_logits


def reference_heads_loop(teacher: nn.Module, heads: LinearHeads, batches: Iterator, seed_style: bool) -> Step:
    """The heads stage by hand: sum of the heads' cross-entropies, SGD on the heads."""
    optimizer = sgd(heads)
    teacher.eval().requires_grad_(seed_style)

    def step() -> int:
        x, y = next(batches)
        _, logits = teacher_pass(teacher, heads, x, seed_style)
        update(optimizer, sum(F.cross_entropy(z, y) for z in logits))
        return len(y)

    return step


def original_dih_loss(s: torch.Tensor, cohort: list[torch.Tensor], y: torch.Tensor, a=0.1, t=5.0):
    """The original's loss: one ``kd_loss`` per classifier, summed, with nothing detached, so where the
    cohort came with autograd on, the backward pass runs on through the teacher (as the original's did)."""
    total = 0.0
    for z in cohort:
        kl = F.kl_div(F.log_softmax(s / t, 1), F.softmax(z / t, 1), reduction="batchmean")
        total = total + kl * a * t * t + (1 - a) * F.cross_entropy(s, y)
    return total


def reference_student_loop(teacher, heads, student, batches: Iterator, seed_style: bool) -> Step:
    """The DIH student by hand: the cohort (heads, then the teacher's logits) from ``teacher_pass``."""
    optimizer = sgd(student.train())
    teacher.eval().requires_grad_(seed_style)
    heads.requires_grad_(seed_style)

    def step() -> int:
        x, y = next(batches)
        with torch.set_grad_enabled(seed_style):
            out, head_logits = teacher_pass(teacher, heads, x, seed_style)
        update(optimizer, original_dih_loss(student(x).logits, [*head_logits, out.logits], y))
        return len(y)

    return step
