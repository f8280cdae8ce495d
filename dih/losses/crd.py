"""Contrastive Representation Distillation (Tian et al., ICLR 2020) as RepDistiller implements it.

    L = CE(s, y) + a_kd T^2 KL(softmax(z/T) || softmax(s/T)) + b (NCE_s + NCE_t)

Each side's pooled ``embedding`` is mapped to ``feat_dim`` and L2-normalised. Each side keeps a momentum
memory bank with one row per training image. NCE_s contrasts the student's embedding with the teacher
bank's row of the same image (the positive) and ``nce_k`` rows of images of other classes (the
negatives); NCE_t does the same with the roles swapped.
"""

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dih.errors import UserError
from dih.losses.base import MethodLoss, Needs
from dih.losses.context import LossContext
from dih.losses.kd import soft_kl
from dih.rules import COUNT, NON_NEGATIVE, POSITIVE, WEIGHT, Number

EPS = 1e-7  # RepDistiller's guard in the NCE ratios


class Embed(nn.Module):
    """Linear map to ``dim_out``, then L2 normalisation (RepDistiller's ``Embed``)."""

    def __init__(self, dim_in: int, dim_out: int = 128):
        super().__init__()
        self.linear = nn.Linear(dim_in, dim_out)

    def forward(self, x: Tensor) -> Tensor:
        return F.normalize(self.linear(x.flatten(1).float()), dim=1)


def contrast_scores(anchor: Tensor, bank: Tensor, idx: Tensor, nce_t: float) -> Tensor:
    """``exp(<bank[idx[b, j]], anchor[b]> / t)``, [B, 1+K]: each anchor against its sampled bank rows.

    One [B, N] product then a gather. This avoids building the [B, 1+K, D] block the reference
    gathers (1 GB at K=16384), and gives the same numbers.
    """
    return torch.exp(torch.gather(anchor @ bank.t(), 1, idx) / nce_t)


def nce_loss(scores: Tensor, num_train: int) -> Tensor:
    """RepDistiller's ``ContrastLoss`` (CRD eq. 18) on normalised scores [B, 1+K], the positive first.

    The noise is uniform over the training set (P_n = 1/N). With m = K/N:
    ``-(sum_b log(P_b0 / (P_b0 + m)) + sum_{b,j>0} log(m / (P_bj + m))) / B``.
    """
    m = (scores.shape[1] - 1) / num_train
    pos, neg = scores[:, 0], scores[:, 1:]
    log_d1 = torch.log(pos / (pos + m + EPS))
    log_d0 = torch.log(m / (neg + m + EPS))
    return -(log_d1.sum() + log_d0.sum()) / scores.shape[0]


class CRDLoss(MethodLoss):
    """``CE + a_kd KD + b CRD``, with the embeddings and both memory banks owned by the loss.

    The banks and the normalisation constants ``z`` are buffers, so a checkpoint restores them exactly.
    """

    name = "crd"
    needs = Needs.FEATURES
    version = 1  # bump when what the loss computes changes (docs/versions.md)
    settings = {
        "alpha_kd": WEIGHT,
        "temperature": POSITIVE,
        "beta": NON_NEGATIVE,
        "nce_k": COUNT,
        "nce_t": POSITIVE,
        "nce_momentum": Number(0, 1),
        "feat_dim": COUNT,
    }

    def __init__(
        self,
        context: LossContext,
        alpha_kd: float = 0.9,
        temperature: float = 4.0,
        beta: float = 0.8,
        nce_k: int = 16384,
        nce_t: float = 0.07,
        nce_momentum: float = 0.5,
        feat_dim: int = 128,
    ):
        super().__init__()
        if context.train_labels is None or context.teacher_features is None:
            raise UserError(
                "The crd loss needs the training labels and a teacher; list a teacher stage first."
            )
        self.alpha_kd, self.temperature, self.beta = float(alpha_kd), float(temperature), float(beta)
        self.nce_k, self.nce_t, self.momentum = int(nce_k), float(nce_t), float(nce_momentum)
        self.num_train = int(context.num_train)
        self.embed_s = Embed(math.prod(context.student_features["embedding"]), feat_dim)
        self.embed_t = Embed(math.prod(context.teacher_features["embedding"]), feat_dim)
        stdv = 1.0 / math.sqrt(feat_dim / 3)  # the reference's initialisation, uniform in [-stdv, stdv]
        self.register_buffer("bank_s", torch.rand(self.num_train, feat_dim) * 2 * stdv - stdv)
        self.register_buffer("bank_t", torch.rand(self.num_train, feat_dim) * 2 * stdv - stdv)
        self.register_buffer("z", torch.full((2,), -1.0))  # Z of (student anchor, teacher anchor); <0: unset
        labels = context.train_labels.long().flatten()
        self.register_buffer("train_labels", labels, persistent=False)
        counts = torch.bincount(labels.cpu())
        negatives = len(labels) - counts[counts > 0]
        if int(negatives.min()) == 0:
            raise UserError(
                "The crd loss draws negatives from other classes; the training split has only one."
            )
        # RepDistiller draws without replacement unless a class has fewer than K negatives.
        self.replacement = bool(self.nce_k > int(negatives.min()))

    def sample_negatives(self, labels: Tensor) -> Tensor:
        """``nce_k`` training indices per anchor, all from other classes than its label, [B, K].

        The draw uses torch's global RNG on the labels' device.
        """
        weights = (self.train_labels.unsqueeze(0) != labels.unsqueeze(1)).float()
        return torch.multinomial(weights, self.nce_k, replacement=self.replacement)

    def forward(self, student, teacher, batch) -> tuple[Tensor, dict[str, Tensor]]:
        teacher = teacher.detached()
        v_s = self.embed_s(student.features["embedding"])
        v_t = self.embed_t(teacher.features["embedding"])
        idx = torch.cat([batch.index.view(-1, 1), self.sample_negatives(batch.labels)], dim=1)
        out_s = contrast_scores(v_s, self.bank_t, idx, self.nce_t)  # student anchor, teacher bank
        out_t = contrast_scores(v_t, self.bank_s, idx, self.nce_t)  # teacher anchor, student bank
        with torch.no_grad():  # Z = mean score * N, estimated on the first batch, then fixed
            estimate = torch.stack([out_s.mean(), out_t.mean()]) * self.num_train
            z = torch.where(self.z < 0, estimate, self.z)  # a copy: the graph never sees the buffer change
            self.z.copy_(z)
        crd = nce_loss(out_s / z[0], self.num_train) + nce_loss(out_t / z[1], self.num_train)
        self._update_banks(batch.index, v_s, v_t)
        parts = {
            "ce": F.cross_entropy(student.logits, batch.labels),
            "kd": self.alpha_kd * soft_kl(student.logits, teacher.logits, self.temperature),
            "crd": self.beta * crd,
        }
        return parts["ce"] + parts["kd"] + parts["crd"], parts

    @torch.no_grad()
    def _update_banks(self, index: Tensor, v_s: Tensor, v_t: Tensor) -> None:
        """``bank[i] <- normalise(m bank[i] + (1 - m) v)`` at the positives.

        The update is out of place because autograd still holds the old banks for the backward pass.
        """
        for name, v in (("bank_s", v_s), ("bank_t", v_t)):
            bank = getattr(self, name)
            rows = F.normalize(bank[index] * self.momentum + v.detach() * (1 - self.momentum), dim=1)
            setattr(self, name, bank.index_copy(0, index, rows))
