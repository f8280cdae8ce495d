"""Decoupled knowledge distillation (Zhao et al., CVPR 2022) as mdistiller's ``DKD.py`` computes it.

The softened KL splits into a target-class term (TCKD: the binary target vs. non-target probabilities)
and a non-target term (NCKD: the distribution over the other classes), weighted separately:

    L = w_ce CE(s, y) + min(e / W, 1) (alpha TCKD + beta NCKD)
    TCKD = T^2 KL([p_t^y, 1 - p_t^y] || [p_s^y, 1 - p_s^y])       p = softmax(logits / T)
    NCKD = T^2 KL(softmax(z/T - 1000 g) || softmax(s/T - 1000 g))  g = one-hot(y)

each KL summed over classes and averaged over the batch, ``e`` the 1-based epoch and ``W`` the warm-up
epochs (mdistiller's ``min(epoch / warmup, 1)``). It reads the teacher's final logits only, so the cohort
cache serves it as it serves KD.
"""

import torch
import torch.nn.functional as F
from torch import Tensor

from dih.losses.base import MethodLoss, Needs
from dih.rules import COUNT, NON_NEGATIVE, POSITIVE


def binary_kl(p_teacher: Tensor, p_student: Tensor, gt: Tensor) -> Tensor:
    """KL between the (target, non-target) masses of two softmax outputs, summed over the batch."""
    t = torch.stack([(p_teacher * gt).sum(1), (p_teacher * (1 - gt)).sum(1)], dim=1)
    s = torch.stack([(p_student * gt).sum(1), (p_student * (1 - gt)).sum(1)], dim=1)
    return F.kl_div(torch.log(s), t, reduction="sum")


def dkd_terms(student: Tensor, teacher: Tensor, labels: Tensor, temperature: float) -> tuple[Tensor, Tensor]:
    """(TCKD, NCKD), each ``T^2`` times a KL summed over classes and averaged over the batch."""
    gt = F.one_hot(labels, student.shape[1]).to(student.dtype)
    teacher = teacher.detach().float()
    scale = temperature**2 / student.shape[0]
    p_student = F.softmax(student / temperature, dim=1)
    p_teacher = F.softmax(teacher / temperature, dim=1)
    tckd = binary_kl(p_teacher, p_student, gt) * scale
    log_q_student = F.log_softmax(student / temperature - 1000.0 * gt, dim=1)
    q_teacher = F.softmax(teacher / temperature - 1000.0 * gt, dim=1)
    nckd = F.kl_div(log_q_student, q_teacher, reduction="sum") * scale
    return tckd, nckd


class DKDLoss(MethodLoss):
    """``ce_weight CE(s, y) + min(e / warmup, 1) (alpha TCKD + beta NCKD)``, teacher's final logits."""

    name = "dkd"
    needs = Needs.LOGITS
    version = 1  # bump when what the loss computes changes (docs/versions.md)
    settings = {
        "ce_weight": NON_NEGATIVE,
        "alpha": NON_NEGATIVE,
        "beta": NON_NEGATIVE,
        "temperature": POSITIVE,
        "warmup": COUNT,
    }

    def __init__(
        self,
        ce_weight: float = 1.0,
        alpha: float = 1.0,
        beta: float = 8.0,
        temperature: float = 4.0,
        warmup: int = 20,
    ):
        super().__init__()
        self.ce_weight, self.alpha, self.beta = float(ce_weight), float(alpha), float(beta)
        self.temperature, self.warmup = float(temperature), int(warmup)

    def ramp(self, epoch: int) -> float:
        """``min(e / warmup, 1)`` at the 1-based epoch ``e``: the DKD term grows over the first epochs."""
        return min(epoch / self.warmup, 1.0)

    def forward(self, student, teacher, batch) -> tuple[Tensor, dict[str, Tensor]]:
        teacher = teacher.detached()
        tckd, nckd = dkd_terms(student.logits, teacher.logits, batch.labels, self.temperature)
        parts = {
            "ce": self.ce_weight * F.cross_entropy(student.logits, batch.labels),
            "dkd": self.ramp(batch.epoch) * (self.alpha * tckd + self.beta * nckd),
        }
        return parts["ce"] + parts["dkd"], parts
