"""Plain cross-entropy: the teacher's own training and the student trained alone."""

import torch.nn.functional as F
from torch import Tensor, nn


class CELoss(nn.Module):
    """``CE(s, y)``; needs no teacher."""

    version = 1  # bump when what the loss computes changes (docs/versions.md)

    def forward(self, student, teacher, batch) -> tuple[Tensor, dict[str, Tensor]]:
        ce = F.cross_entropy(student.logits, batch.labels)
        return ce, {"ce": ce}
