"""What the heads stage measures and decides on the validation split, never on the test split: which learning
rate each head keeps when several are tried side by side, each head's temperature, and how far past SGD's
stability edge each linear head's learning rate is.

Why (docs/choices.md, "Heads that teach"): trained with the teacher's recipe (SGD, lr 0.1), a linear head on a
shallow stage's flattened map runs far past SGD's stability edge (lr x the largest eigenvalue of E[x x^T] in
the thousands) and settles only once its softmax saturates, so its targets are nearly one-hot. The search
trains one copy of the heads per candidate learning rate on the same batches from the same initial weights
(one frozen teacher forward serves them all) and keeps, per head, the copy with the best validation accuracy
at the last epoch. The calibration divides each head's logits by the temperature that minimises its
validation negative log-likelihood, folded into the head's last linear layer, so the artifact stays a plain
set of heads and every later stage reads it unchanged.
"""

from __future__ import annotations

import copy
import math

import torch
from torch import Tensor, nn

from dih.data import ImageData
from dih.data.loader import split_loader
from dih.models.heads import MountedHeads
from dih.models.output import ModelOutput
from dih.train import metrics as m

# Temperatures searched by the calibration (a closed interval, in log space): a head worse than chance on the
# validation split would drive T to infinity, and its targets would then be uniform at the upper bound.
TEMPERATURE_RANGE = (1e-2, 1e4)
GOLDEN_STEPS = 100  # each shrinks the interval by 0.618: far below float64 resolution long before the end


def candidate_name(head: int, lr: float) -> str:
    """The metric name of head ``head`` (from 1) of the copy trained at ``lr``: ``head2@lr0.01``."""
    return f"{m.head(head)}@lr{lr:g}"


class CandidatesOnFrozen(nn.Module):
    """One copy of the heads per candidate learning rate, all reading one frozen teacher forward. The side
    stays out of the module tree, so only the heads are checkpointed and optimised."""

    def __init__(self, side: nn.Module, heads: MountedHeads, lrs: tuple[float, ...]):
        super().__init__()
        self.lrs = tuple(lrs)
        self.copies = nn.ModuleList(copy.deepcopy(heads) for _ in self.lrs)  # the same initial weights
        object.__setattr__(self, "side", side)

    @property
    def names(self) -> list[str]:
        k = len(self.copies[0])
        return [candidate_name(i, lr) for lr in self.lrs for i in range(1, k + 1)]

    def forward(self, images: Tensor) -> ModelOutput:
        features = self.side(images).features
        logits = [z for heads in self.copies for z in heads(features)]
        return ModelOutput(logits=logits[-1], heads=logits)


@torch.no_grad()
def validation_logits(model: nn.Module, data: ImageData, device: torch.device, batch_size: int) -> tuple:
    """(each classifier's logits on the validation split, in the model's order; the labels), float32."""
    loader = split_loader(data, "val", batch_size, device)
    model.eval()
    outputs, labels = [], []
    for batch in loader.epoch(0):
        outputs.append([z.float() for z in model(batch.images).heads])
        labels.append(batch.labels)
    return [torch.cat(parts) for parts in zip(*outputs)], torch.cat(labels)


def choose(
    candidates: CandidatesOnFrozen, logits: list[Tensor], labels: Tensor, summary: dict
) -> tuple[MountedHeads, dict]:
    """Per head, the copy with the best validation accuracy (the first listed on a tie): the heads made of
    the chosen copies, and the summary's lines for them (``head2/lr``, its validation accuracy, and its test
    accuracies under the plain ``head2/...`` names the report reads)."""
    k = len(candidates.copies[0])
    chosen = copy.deepcopy(candidates.copies[0])
    found: dict = {}
    for i in range(1, k + 1):
        accs = [_accuracy(logits[c * k + i - 1], labels) for c in range(len(candidates.lrs))]
        best = max(range(len(accs)), key=lambda c: (accs[c], -c))
        lr = candidates.lrs[best]
        chosen.heads[i - 1].load_state_dict(candidates.copies[best].heads[i - 1].state_dict())
        name = candidate_name(i, lr)
        found[f"{m.head(i)}/lr"] = lr
        found[m.acc(m.head(i), "val")] = accs[best]
        for at in (m.LAST, m.BEST_VAL):
            if m.final(name, at) in summary:
                found[m.final(m.head(i), at)] = summary[m.final(name, at)]
        for c, candidate_lr in enumerate(candidates.lrs):
            found[m.acc(candidate_name(i, candidate_lr), "val")] = accs[c]
    return chosen, found


def fit_temperature(logits: Tensor, labels: Tensor) -> float:
    """The T > 0 that minimises the mean NLL of softmax(logits / T) on these labels. The NLL is convex in 1/T,
    so unimodal in log T, and a golden-section search over log T finds its minimum within the range."""
    logits = logits.double()

    def nll(log_t: float) -> float:
        return nn.functional.cross_entropy(logits / math.exp(log_t), labels).item()

    low, high = (math.log(t) for t in TEMPERATURE_RANGE)
    ratio = (math.sqrt(5) - 1) / 2
    a, b = high - ratio * (high - low), low + ratio * (high - low)
    fa, fb = nll(a), nll(b)
    for _ in range(GOLDEN_STEPS):
        if fa <= fb:
            high, b, fb = b, a, fa
            a = high - ratio * (high - low)
            fa = nll(a)
        else:
            low, a, fa = a, b, fb
            b = low + ratio * (high - low)
            fb = nll(b)
    return math.exp((low + high) / 2)


def calibrate(heads: MountedHeads, logits: list[Tensor], labels: Tensor) -> dict:
    """Divide each head's logits by its fitted temperature, in place; the summary's lines
    (``head2/temperature`` and the validation NLL before and after)."""
    found = {}
    for i, (head, z) in enumerate(zip(heads.heads, logits, strict=True), 1):
        temperature = fit_temperature(z, labels)
        _fold(head, 1.0 / temperature)
        found[f"{m.head(i)}/temperature"] = temperature
        found[f"{m.head(i)}/val_nll_uncalibrated"] = _nll(z, labels)
        found[f"{m.head(i)}/val_nll"] = _nll(z / temperature, labels)
    return found


@torch.no_grad()
def _fold(head: nn.Module, scale: float) -> None:
    """Multiply a head's logits by ``scale`` through its last linear layer, which computes them (every kind
    of head ends in one)."""
    last = [module for module in head.modules() if isinstance(module, nn.Linear)][-1]
    last.weight.mul_(scale)
    if last.bias is not None:
        last.bias.mul_(scale)


# Images whose features give the largest eigenvalue of E[x x^T] (the mean direction dominates it for the
# non-negative features of a ReLU network, so a thousand images pin it to a few per cent).
CURVATURE_IMAGES = 1024


@torch.no_grad()
def curvature(side: nn.Module, stage_names: tuple[str, ...], data: ImageData, device: torch.device) -> list:
    """Per mount point, the largest eigenvalue of E[x x^T] of its flattened features over up to
    ``CURVATURE_IMAGES`` validation images: a linear head's loss has curvature up to this (times the
    softmax's, at most 1/2), and SGD with momentum 0.9 is stable only while lr x lambda stays below about
    2 (1 + 0.9) = 3.8. Computed from the images' Gram matrix, which has the same nonzero eigenvalues."""
    loader = split_loader(data, "val", 256, device, count=CURVATURE_IMAGES)
    gathered: dict[str, list[Tensor]] = {name: [] for name in stage_names}
    for batch in loader.epoch(0):
        features = side(batch.images).features
        for name in stage_names:
            gathered[name].append(features[name].flatten(1).float())
    found = []
    for name in stage_names:
        x = torch.cat(gathered[name])
        gram = (x @ x.T).double().cpu() / len(x)
        found.append(torch.linalg.eigvalsh(gram)[-1].item())
    return found


def stability_lines(lambdas: list[float], lrs: list[float]) -> dict:
    """The summary's lines: each head's ``head2/feature_lambda_max`` and ``head2/lr_x_lambda``."""
    found = {}
    for i, (lam, lr) in enumerate(zip(lambdas, lrs, strict=True), 1):
        found[f"{m.head(i)}/feature_lambda_max"] = lam
        found[f"{m.head(i)}/lr_x_lambda"] = lr * lam
    return found


def _accuracy(logits: Tensor, labels: Tensor) -> float:
    return 100.0 * (logits.argmax(1) == labels).double().mean().item()


def _nll(logits: Tensor, labels: Tensor) -> float:
    return nn.functional.cross_entropy(logits.double(), labels).item()
