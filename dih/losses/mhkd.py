"""Multi-head KD, as the original DIH repository's MHKD script: KD on the final logits, plus student heads
that each learn KD, with the same weights, from the same-stage teacher head (SPEC s.5):

    L = (1-a) CE(s, y) + a T^2 KL(z_T || s) + beta * sum_i [(1-a) CE(h_i^s, y) + a T^2 KL(h_i^t || h_i^s)]

Heads sit on every stage but the deepest, for teacher and student; student and teacher heads pair from the
shallowest up (``pair_stages``), as the script zips its dictionaries of heads.
"""

import torch.nn.functional as F
from torch import Tensor

from dih.errors import UserError
from dih.losses.base import MethodLoss, Needs
from dih.losses.context import LossContext
from dih.losses.kd import soft_kl
from dih.losses.pairing import pair_stages
from dih.models.mhkd_heads import MHKDHeads
from dih.rules import NON_NEGATIVE, POSITIVE, WEIGHT


class MHKDLoss(MethodLoss):
    """Owns the student's ``MHKDHeads``, one per student stage that ``pair_stages`` pairs with a teacher head;
    the teacher heads' logits are ``teacher.cohort[:-1]``, one per teacher stage but the deepest, in
    ``context.teacher_stages`` order."""

    name = "mhkd"
    # It reads the teacher heads' and the teacher's logits, but has always run its teacher side live (it was
    # never served by the cohort cache): LOGITS would plan a cache and change its students' keys.
    needs = Needs.FEATURES
    version = 2  # bump when what the loss computes changes (docs/versions.md)
    settings = {"alpha": WEIGHT, "temperature": POSITIVE, "beta": NON_NEGATIVE}

    def __init__(self, context: LossContext, alpha: float = 0.1, temperature: float = 4.0, beta: float = 0.5):
        super().__init__()
        s_stages, t_stages = tuple(context.student_stages), tuple(context.teacher_stages)
        if len(s_stages) < 2 or len(t_stages) < 2:
            raise UserError(
                "The MHKD loss needs a teacher and a student with at least two stages each (heads sit on all "
                "but the deepest); use zoo models."
            )
        pairs = pair_stages(s_stages[:-1], t_stages[:-1])
        self.teacher_heads = len(t_stages) - 1
        self.teacher_index = [t_stages.index(t) for _, t in pairs]
        # The paired student stages, then the student's deepest (it carries no head, MHKDHeads drops it).
        mounts = [s for s, _ in pairs] + [s_stages[-1]]
        self.heads = MHKDHeads({s: context.student_features[s] for s in mounts}, context.num_classes)
        self.alpha, self.temperature, self.beta = float(alpha), float(temperature), float(beta)

    def forward(self, student, teacher, batch) -> tuple[Tensor, dict[str, Tensor]]:
        teacher = teacher.detached()
        teacher_heads = teacher.cohort[:-1]
        if len(teacher_heads) != self.teacher_heads:
            raise UserError(
                f"MHKD expects {self.teacher_heads} teacher heads (all stages but the deepest), got "
                f"{len(teacher_heads)}; train the teacher heads stage (method=mhkd) before the student."
            )
        a, T, y = self.alpha, self.temperature, batch.labels
        heads = 0.0
        for h_s, i in zip(self.heads(student.features), self.teacher_index, strict=True):
            heads = heads + (1 - a) * F.cross_entropy(h_s, y) + a * soft_kl(h_s, teacher_heads[i], T)
        parts = {
            "ce": (1 - a) * F.cross_entropy(student.logits, y),
            "kd": a * soft_kl(student.logits, teacher.logits, T),
            "heads": self.beta * heads,
        }
        return parts["ce"] + parts["kd"] + parts["heads"], parts
