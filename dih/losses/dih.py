"""The DIH student loss: every classifier of the cohort (k heads + the teacher's own) teaches at once.

    L_DIH = sum_j [(1 - a_j) CE(s, y) + a_j T^2 KL(softmax(z_j/T) || softmax(s/T))]

summed over the k+1 classifiers as the original code does (SPEC s.4). A classifier whose alpha is 0 leaves
the sum entirely, its CE share included, as the original loop skips it; ``reduction="mean"`` divides by the
number of classifiers left in the sum (k+1 unless some alpha is 0).
"""

from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor

from dih.errors import UserError
from dih.losses.base import MethodLoss, Needs
from dih.losses.kd import soft_kl
from dih.rules import POSITIVE, WEIGHT, AnyOf, Choice, ListOf, NotAllZero


class DIHLoss(MethodLoss):
    """Multi-teacher KD from the cohort; ``alpha`` is one value or one per classifier (shallow first)."""

    name = "dih"
    needs = Needs.LOGITS
    version = 2  # bump when what the loss computes changes (docs/versions.md)
    settings = {
        "alpha": NotAllZero(AnyOf(WEIGHT, ListOf(WEIGHT, nonempty=True))),
        "temperature": POSITIVE,
        "reduction": Choice(["sum", "mean"]),
    }

    def __init__(
        self, alpha: float | Sequence[float] = 0.1, temperature: float = 5.0, reduction: str = "sum"
    ):
        super().__init__()
        if reduction not in ("sum", "mean"):
            raise UserError(f"method.loss.reduction must be 'sum' or 'mean', not '{reduction}'.")
        self.alpha = alpha if isinstance(alpha, int | float) else [float(a) for a in alpha]
        self.temperature, self.reduction = float(temperature), reduction

    def alphas(self, cohort_size: int) -> list[float]:
        if isinstance(self.alpha, int | float):
            return [float(self.alpha)] * cohort_size
        if len(self.alpha) != cohort_size:
            raise UserError(
                f"method.loss.alpha has {len(self.alpha)} values but the cohort has {cohort_size} "
                "classifiers; "
                f"give one alpha or exactly {cohort_size}."
            )
        return self.alpha

    def forward(self, student, teacher, batch) -> tuple[Tensor, dict[str, Tensor]]:
        teacher = teacher.detached()
        taking_part = [(a, z) for a, z in zip(self.alphas(len(teacher.cohort)), teacher.cohort) if a != 0]
        ce = F.cross_entropy(student.logits, batch.labels)
        ce_part = sum(1 - a for a, _ in taking_part) * ce
        kd_part = sum(a * soft_kl(student.logits, z, self.temperature) for a, z in taking_part)
        scale = 1 / len(taking_part) if self.reduction == "mean" else 1.0
        parts = {"ce": scale * ce_part, "kd": scale * kd_part}
        return parts["ce"] + parts["kd"], parts
