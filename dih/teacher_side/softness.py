"""How soft the targets a teacher side gives are: for each classifier of its cohort (each head, shallow first,
then the teacher's own), the distribution softmax(z / T) a student is distilled towards.

A classifier whose logits are far apart relative to T gives (almost) one-hot targets: it teaches its own
argmax, right or wrong, rather than how classes resemble each other. ``python -m dih.cohort_stats`` measures a
finished run's cohort on demand; every distilling student stage with a temperature measures its own on the
training images, unaugmented, and keeps the figures in its summary, where the report reads them.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from dih.data import ImageData
from dih.data.loader import Batch, split_loader
from dih.train import metrics as m

CONFIDENT = 0.99  # a softened target whose top class has at least this probability is nearly one-hot


def softness(logits: Tensor, labels: Tensor, temperature: float) -> dict[str, float]:
    """Summary of one classifier's logits (N x C) against the labels at temperature T."""
    logits = logits.double()
    probs = torch.softmax(logits / temperature, dim=1)
    entropy = -(probs * torch.log_softmax(logits / temperature, dim=1)).sum(dim=1)
    top = probs.max(dim=1).values
    return {
        "acc": 100.0 * (logits.argmax(dim=1) == labels).double().mean().item(),
        "logit_range": (logits.max(dim=1).values - logits.min(dim=1).values).mean().item(),
        "top_prob": top.mean().item(),
        "entropy": (entropy.mean() / math.log(logits.shape[1])).item(),  # 1 = uniform, 0 = one-hot
        "one_hot_share": 100.0 * (top >= CONFIDENT).double().mean().item(),
    }


def cohort_names(size: int) -> list[str]:
    """The cohort's classifiers by their metric names: ``head1``... shallow first, then ``teacher``."""
    return [m.head(i) for i in range(1, size)] + [m.TEACHER]


@torch.no_grad()
def measure_targets(
    teacher: Callable[[Batch], object],
    data: ImageData,
    device: torch.device,
    batch_size: int,
    temperature: float,
) -> dict[str, float]:
    """A student summary's lines on its teacher side's targets over the training images, unaugmented:
    ``targets/head1/one_hot_share``, ``targets/teacher/entropy``... and the temperature they are at.
    ``teacher(batch)`` gives the side's outputs (the live side's or its cohort cache's)."""
    loader = split_loader(data, "train", batch_size, device)
    outputs, labels = [], []
    for batch in loader.epoch(0):
        outputs.append([z.float().cpu() for z in teacher(batch).cohort])
        labels.append(batch.labels.cpu())
    cohort, labels = [torch.cat(parts) for parts in zip(*outputs)], torch.cat(labels)
    found = {m.TARGETS_TEMPERATURE: float(temperature)}
    for name, logits in zip(cohort_names(len(cohort)), cohort, strict=True):
        s = softness(logits, labels, temperature)
        found[m.targets(name, "one_hot_share")] = s["one_hot_share"]
        found[m.targets(name, "entropy")] = s["entropy"]
    return found
