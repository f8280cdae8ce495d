"""Plain cross-entropy: the teacher's own training and the student trained alone."""

import torch.nn.functional as F
from torch import Tensor

from dih.losses.base import MethodLoss, Needs


class CELoss(MethodLoss):
    """``CE(s, y)``; needs no teacher."""

    name = "ce"
    needs = Needs.NOTHING
    version = 1  # bump when what the loss computes changes (docs/versions.md)
    settings = {}

    def forward(self, student, teacher, batch) -> tuple[Tensor, dict[str, Tensor]]:
        ce = F.cross_entropy(student.logits, batch.labels)
        return ce, {"ce": ce}
