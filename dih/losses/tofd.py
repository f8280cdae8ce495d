"""Task-Oriented Feature Distillation (Zhang et al., NeurIPS 2020), on this project's terms (SPEC s.5).

The student's classifiers are its auxiliary classifiers (owned by this loss) plus its own. The teacher's
are the teacher side's cohort: its frozen auxiliary classifiers plus its own. They pair by depth with
``pair_stages``, so the two final classifiers always pair. For each pair i (student stage, teacher stage):

    CE(s_i, y) + T^2 KL(softmax(z_i/T) || softmax(s_i/T)) + a mean_b ||link_i(f_s,i) - f_t,i||_2

plus ``b sum_i (||W_i W_i^T - I||_F + ||W_i^T W_i - I||_F)`` over the links' weight matrices W_i.
"""

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dih.errors import UserError
from dih.losses.context import LossContext
from dih.losses.kd import soft_kl
from dih.losses.pairing import match_spatial, pair_stages
from dih.models.tofd_aux import TOFDAuxHeads


class Link(nn.Module):
    """A 1x1 conv without bias, from student channels to teacher channels.

    It is a linear map over channels, like the reference's bias-free ``nn.Linear`` link.
    """

    def __init__(self, student_channels: int, teacher_channels: int):
        super().__init__()
        self.conv = nn.Conv2d(student_channels, teacher_channels, 1, bias=False)

    @property
    def matrix(self) -> Tensor:
        """The weight as a ``[C_teacher, C_student]`` matrix."""
        return self.conv.weight.flatten(1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)


def feature_distance(link: Link, f_s: Tensor, f_t: Tensor) -> Tensor:
    """``mean_b ||link(f_s)_b - f_t,b||_2``, the norm taken over channels and positions.

    Where the sizes differ, the larger map is average-pooled to the smaller's size, as in AT (SPEC s.5).
    Pooling and a bias-free 1x1 conv commute, so the student's map is pooled before the link.
    """
    f_s, f_t = match_spatial(f_s, f_t)
    return (link(f_s) - f_t.float()).flatten(1).norm(dim=1).mean()


def orthogonality(w: Tensor) -> Tensor:
    """``||W W^T - I||_F + ||W^T W - I||_F``.

    Plain Frobenius norms, not squared, like the reference's ``torch.dist``.
    """
    eye_t = torch.eye(w.shape[0], device=w.device, dtype=w.dtype)
    eye_s = torch.eye(w.shape[1], device=w.device, dtype=w.dtype)
    return torch.linalg.matrix_norm(w @ w.t() - eye_t) + torch.linalg.matrix_norm(w.t() @ w - eye_s)


class TOFDLoss(nn.Module):
    """Every paired student classifier learns with CE + KD from its teacher classifier. The paired features
    are matched through links, and the links are kept near-orthogonal.

    The loss owns the student's auxiliary classifiers and the links. Only paired student stages get a
    classifier: when the student has more stages than the teacher, its shallowest stages have none.
    """

    version = 1  # bump when what the loss computes changes (docs/versions.md)

    def __init__(
        self, context: LossContext, alpha: float = 0.05, beta: float = 0.03, temperature: float = 3.0
    ):
        super().__init__()
        if context.teacher_features is None:
            raise UserError("The tofd loss needs a teacher; list a teacher stage before the student.")
        self.alpha, self.beta, self.temperature = float(alpha), float(beta), float(temperature)
        self.pairs = pair_stages(context.student_stages, context.teacher_stages)
        if len(self.pairs) < 2:
            raise UserError("The tofd loss needs models with at least two mount points each.")
        self.heads = TOFDAuxHeads(
            {s: context.student_features[s] for s, _ in self.pairs}, context.num_classes
        )
        self.links = nn.ModuleList(
            Link(context.student_features[s][0], context.teacher_features[t][0]) for s, t in self.pairs
        )
        self.cohort_size = len(context.teacher_stages)
        self.cohort_index = [context.teacher_stages.index(t) for _, t in self.pairs]

    def forward(self, student, teacher, batch) -> tuple[Tensor, dict[str, Tensor]]:
        if len(teacher.cohort) != self.cohort_size:
            raise UserError(
                f"The tofd loss needs the teacher's {self.cohort_size - 1} auxiliary classifiers and its own "
                f"in the cohort, but got {len(teacher.cohort)} classifiers; give the method tofd heads."
            )
        s_logits = [*self.heads(student.features), student.logits]
        t_logits = [teacher.cohort[j] for j in self.cohort_index]
        ce = sum(F.cross_entropy(s, batch.labels) for s in s_logits)
        kd = sum(soft_kl(s, z, self.temperature) for s, z in zip(s_logits, t_logits, strict=True))
        feat = sum(
            feature_distance(link, student.features[s], teacher.features[t])
            for link, (s, t) in zip(self.links, self.pairs, strict=True)
        )
        orth = sum(orthogonality(link.matrix) for link in self.links)
        parts = {"ce": ce, "kd": kd, "feat": self.alpha * feat, "orth": self.beta * orth}
        return parts["ce"] + parts["kd"] + parts["feat"] + parts["orth"], parts
