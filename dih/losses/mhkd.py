"""Multi-head KD: KD on the final logits, plus student heads that each learn from the labels and from the
same-stage teacher head (SPEC s.5):

    L = (1-a) CE(s, y) + a T^2 KL(z_T || s) + beta * sum_i [CE(h_i^s, y) + T^2 KL(h_i^t || h_i^s)]
"""

import torch.nn.functional as F
from torch import Tensor, nn

from dih.errors import UserError
from dih.losses.context import LossContext
from dih.losses.kd import soft_kl
from dih.losses.pairing import pair_stages
from dih.models.mhkd_heads import MHKDHeads


class MHKDLoss(nn.Module):
    """Owns the student's ``MHKDHeads``, one per student stage that ``pair_stages`` pairs with a teacher head;
    the teacher heads' logits are ``teacher.cohort[:-1]``, in ``context.teacher_stages`` order."""

    version = 2  # bump when what the loss computes changes (docs/versions.md)

    def __init__(self, context: LossContext, alpha: float = 0.1, temperature: float = 4.0, beta: float = 0.5):
        super().__init__()
        pairs = pair_stages(context.student_stages, context.teacher_stages)
        if not pairs:
            raise UserError(
                "The MHKD loss needs a teacher with stage outputs; use a zoo model as the teacher."
            )
        self.teacher_stages = tuple(context.teacher_stages)
        self.teacher_index = [self.teacher_stages.index(t) for _, t in pairs]
        self.heads = MHKDHeads({s: context.student_features[s] for s, _ in pairs}, context.num_classes)
        self.alpha, self.temperature, self.beta = float(alpha), float(temperature), float(beta)

    def forward(self, student, teacher, batch) -> tuple[Tensor, dict[str, Tensor]]:
        teacher_heads = teacher.cohort[:-1]
        if len(teacher_heads) != len(self.teacher_stages):
            raise UserError(
                f"MHKD expects one teacher head per teacher stage ({len(self.teacher_stages)}), got "
                f"{len(teacher_heads)}; train the teacher heads stage (method=mhkd) before the student."
            )
        T, y = self.temperature, batch.labels
        heads = 0.0
        for h_s, i in zip(self.heads(student.features), self.teacher_index):
            heads = heads + F.cross_entropy(h_s, y) + soft_kl(h_s, teacher_heads[i], T)
        parts = {
            "ce": (1 - self.alpha) * F.cross_entropy(student.logits, y),
            "kd": self.alpha * soft_kl(student.logits, teacher.logits, T),
            "heads": self.beta * heads,
        }
        return parts["ce"] + parts["kd"] + parts["heads"], parts
