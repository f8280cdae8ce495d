"""Task-Oriented Feature Distillation (Zhang et al., NeurIPS 2020) as its official code computes it (SPEC 5).

The student's classifiers are its auxiliary classifiers (owned by this loss) plus its own; the teacher's are
the teacher side's cohort, its frozen auxiliary classifiers plus its own. They pair from the deepest, as the
reference zips its deep-first lists, so the two final classifiers always pair. For each pair c:

    CE(s_c, y) + softCE(s_c, z_c; T_e) + a * torch.dist(L_c p_s,c, p_t,c)

where ``softCE = -(softmax(z/T_e) * log_softmax(s/T_e)).sum(1).mean()`` (no T^2), ``T_e = 1 + t e / E`` at
the 1-based epoch e of E (the reference's ``1 + (t/250)(1 + epoch)``), ``p`` the pooled vector classifier c's
final linear layer reads, ``L_c`` a bias-free linear link and ``torch.dist`` one Frobenius norm over the
whole batch; plus ``b sum_c (||L_c L_c^T - I||_F + ||L_c^T L_c - I||_F)``.
"""

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dih.errors import UserError
from dih.losses.base import MethodLoss, Needs
from dih.losses.context import LossContext
from dih.losses.pairing import pair_stages
from dih.models.tofd_aux import TOFDAuxHeads
from dih.rules import NON_NEGATIVE


def soft_cross_entropy(student_logits: Tensor, teacher_logits: Tensor, temperature: float) -> Tensor:
    """``-(softmax(z/T) * log_softmax(s/T)).sum(1).mean()``: the reference's ``CrossEntropy``, no T^2."""
    target = F.softmax(teacher_logits.detach().float() / temperature, dim=1)
    return -(target * F.log_softmax(student_logits / temperature, dim=1)).sum(1).mean()


def orthogonality(w: Tensor) -> Tensor:
    """``||W W^T - I||_F + ||W^T W - I||_F``, plain Frobenius norms (the reference's ``torch.dist``)."""
    eye_out = torch.eye(w.shape[0], device=w.device, dtype=w.dtype)
    eye_in = torch.eye(w.shape[1], device=w.device, dtype=w.dtype)
    return torch.linalg.matrix_norm(w @ w.t() - eye_out) + torch.linalg.matrix_norm(w.t() @ w - eye_in)


class TOFDLoss(MethodLoss):
    """Owns the student's auxiliary classifiers and one link per paired classifier.

    Only paired student stages get a classifier: when the student has more stages than the teacher, its
    shallowest stages have none. ``temperature_rise`` is the reference's ``t``.
    """

    name = "tofd"
    needs = Needs.FEATURES
    version = 2  # bump when what the loss computes changes (docs/versions.md)
    settings = {"alpha": NON_NEGATIVE, "beta": NON_NEGATIVE, "temperature_rise": NON_NEGATIVE}

    def __init__(
        self,
        context: LossContext,
        alpha: float = 0.05,
        beta: float = 0.03,
        temperature_rise: float = 3.0,
    ):
        super().__init__()
        if context.teacher_features is None:
            raise UserError("The tofd loss needs a teacher; list a teacher stage before the student.")
        if context.epochs < 1:
            raise UserError("The tofd loss needs the stage's epochs (its temperature rises over them).")
        self.alpha, self.beta = float(alpha), float(beta)
        self.temperature_rise, self.epochs = float(temperature_rise), int(context.epochs)
        pairs = pair_stages(context.student_stages, context.teacher_stages, from_deepest=True)
        if len(pairs) < 2:
            raise UserError("The tofd loss needs models with at least two mount points each.")
        self.heads = TOFDAuxHeads({s: context.student_features[s] for s, _ in pairs}, context.num_classes)
        self.cohort_size = len(context.teacher_stages)
        # Teacher cohort positions of the paired classifiers: its aux heads by stage, then its own (last).
        self.teacher_index = [context.teacher_stages.index(t) for _, t in pairs[:-1]] + [self.cohort_size - 1]
        # An aux head's pooled vector has its side's deepest stage's width (it mirrors the backbone down to
        # there); the final classifier reads the model's pooled ``embedding``.
        widths_s = [context.student_features[pairs[-1][0]][0]] * (len(pairs) - 1)
        widths_t = [context.teacher_features[pairs[-1][1]][0]] * (len(pairs) - 1)
        widths_s.append(context.student_features["embedding"][0])
        widths_t.append(context.teacher_features["embedding"][0])
        self.links = nn.ModuleList(
            nn.Linear(c_s, c_t, bias=False) for c_s, c_t in zip(widths_s, widths_t, strict=True)
        )

    def temperature(self, epoch: int) -> float:
        """``T_e = 1 + t e / E`` for the 1-based epoch ``e``: rises from ``1 + t/E`` to ``1 + t``."""
        return 1.0 + self.temperature_rise * epoch / self.epochs

    def forward(self, student, teacher, batch) -> tuple[Tensor, dict[str, Tensor]]:
        teacher = teacher.detached()
        if len(teacher.cohort) != self.cohort_size or len(teacher.embeddings) != self.cohort_size:
            raise UserError(
                f"The tofd loss needs the teacher's {self.cohort_size - 1} auxiliary classifiers and its "
                f"own, with their pooled inputs, but got {len(teacher.cohort)} classifiers; give the method "
                "tofd heads."
            )
        head_logits, head_embeddings = self.heads.classify(student.features)
        s_logits = [*head_logits, student.logits]
        s_embeddings = [*head_embeddings, student.features["embedding"]]
        temperature = self.temperature(batch.epoch)
        ce = kd = feat = 0.0
        for s, p_s, link, j in zip(s_logits, s_embeddings, self.links, self.teacher_index, strict=True):
            ce = ce + F.cross_entropy(s, batch.labels)
            kd = kd + soft_cross_entropy(s, teacher.cohort[j], temperature)
            feat = feat + torch.dist(link(p_s), teacher.embeddings[j], p=2)
        orth = sum(orthogonality(link.weight) for link in self.links)
        parts = {"ce": ce, "kd": kd, "feat": self.alpha * feat, "orth": self.beta * orth}
        return parts["ce"] + parts["kd"] + parts["feat"] + parts["orth"], parts
