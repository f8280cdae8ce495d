"""Attention transfer (Zagoruyko & Komodakis): the student matches the teacher's spatial attention maps.

    L_AT = CE(s, y) + beta * sum_l mean((q_s^l - q_t^l)^2),   q = normalize(vec(mean_c f^p))

over paired stage outputs (SPEC s.5), as RepDistiller's ``Attention`` computes it on the stage outputs
(``feat[1:-1]``, zipped from the shallowest): beta 1000, p 2. Where the paired maps differ in size, the
larger is average-pooled to the smaller's.
"""

import torch.nn.functional as F
from torch import Tensor

from dih.errors import UserError
from dih.losses.base import MethodLoss, Needs
from dih.losses.context import LossContext
from dih.losses.pairing import as_float, match_spatial, pair_stages
from dih.rules import NON_NEGATIVE, POSITIVE


def attention_map(f: Tensor, p: float = 2) -> Tensor:
    """``[B, H*W]`` unit-norm map of where a ``[B, C, H, W]`` feature map is active (mean over channels)."""
    return F.normalize(f.pow(p).mean(1).flatten(1))


class ATLoss(MethodLoss):
    """``CE(s, y) + beta * sum_l mean((q_s^l - q_t^l)^2)`` over the stages ``pair_stages`` matches."""

    name = "at"
    needs = Needs.FEATURES
    version = 2  # bump when what the loss computes changes (docs/versions.md)
    settings = {"beta": NON_NEGATIVE, "p": POSITIVE}

    def __init__(self, context: LossContext, beta: float = 1000.0, p: float = 2):
        super().__init__()
        self.pairs = pair_stages(context.student_stages, context.teacher_stages)
        if not self.pairs:
            raise UserError("The AT loss needs a teacher with stage outputs; use a zoo model as the teacher.")
        self.beta, self.p = float(beta), p

    def forward(self, student, teacher, batch) -> tuple[Tensor, dict[str, Tensor]]:
        teacher = teacher.detached()
        ce = F.cross_entropy(student.logits, batch.labels)
        at = 0.0
        for s_name, t_name in self.pairs:
            f_s, f_t = match_spatial(as_float(student.features[s_name]), as_float(teacher.features[t_name]))
            at = at + (attention_map(f_s, self.p) - attention_map(f_t, self.p)).pow(2).mean()
        parts = {"ce": ce, "at": self.beta * at}
        return parts["ce"] + parts["at"], parts
