"""Canonical knowledge distillation (Hinton et al.): cross-entropy plus a softened KL to the teacher."""

import torch.nn.functional as F
from torch import Tensor

from dih.losses.base import MethodLoss, Needs
from dih.rules import POSITIVE, WEIGHT


def soft_kl(student_logits: Tensor, teacher_logits: Tensor, temperature: float) -> Tensor:
    """``T^2 KL(softmax(z/T) || softmax(s/T))``, summed over classes, averaged over the batch.

    The T^2 keeps the gradient's scale independent of the temperature. The teacher's logits are a target:
    no gradient flows into them.
    """
    log_p_student = F.log_softmax(student_logits / temperature, dim=1)
    log_p_teacher = F.log_softmax(teacher_logits.detach().float() / temperature, dim=1)
    kl = F.kl_div(log_p_student, log_p_teacher, reduction="batchmean", log_target=True)
    return kl * temperature**2


class KDLoss(MethodLoss):
    """``(1-a) CE(s, y) + a T^2 KL(z || s)`` with the teacher's final logits ``z``."""

    name = "kd"
    needs = Needs.LOGITS
    version = 1  # bump when what the loss computes changes (docs/versions.md)
    settings = {"alpha": WEIGHT, "temperature": POSITIVE}

    def __init__(self, alpha: float = 0.1, temperature: float = 5.0):
        super().__init__()
        self.alpha, self.temperature = float(alpha), float(temperature)

    def forward(self, student, teacher, batch) -> tuple[Tensor, dict[str, Tensor]]:
        teacher = teacher.detached()
        ce = F.cross_entropy(student.logits, batch.labels)
        kd = soft_kl(student.logits, teacher.logits, self.temperature)
        parts = {"ce": (1 - self.alpha) * ce, "kd": self.alpha * kd}
        return parts["ce"] + parts["kd"], parts
