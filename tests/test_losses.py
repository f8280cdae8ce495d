"""The student losses against independent computations written here, on small tensors."""

import math
from types import SimpleNamespace

import pytest
import torch

from dih.errors import UserError
from dih.losses import LOSSES, CELoss, DIHLoss, KDLoss, build_loss
from dih.models.output import ModelOutput
from dih.teacher_side.side import TeacherOutput


def reference_ce(s, y):
    """Cross-entropy by hand: mean over the batch of -log softmax(s)[y]."""
    total = 0.0
    for row, label in zip(s.tolist(), y.tolist()):
        log_norm = math.log(sum(math.exp(v) for v in row))
        total += log_norm - row[label]
    return total / len(y)


def reference_kl(s, z, T):
    """T^2 * mean over the batch of sum_c p_c (log p_c - log q_c), p = softmax(z/T), q = softmax(s/T)."""
    total = 0.0
    for srow, zrow in zip(s.tolist(), z.tolist()):
        zs = [v / T for v in zrow]
        ss = [v / T for v in srow]
        log_zn = math.log(sum(math.exp(v) for v in zs))
        log_sn = math.log(sum(math.exp(v) for v in ss))
        for zc, sc in zip(zs, ss):
            p = math.exp(zc - log_zn)
            total += p * ((zc - log_zn) - (sc - log_sn))
    return T * T * total / len(s)


def make(batch=5, classes=7, cohort=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    s = torch.randn(batch, classes, generator=g) * 3
    zs = [torch.randn(batch, classes, generator=g) * 3 for _ in range(cohort)]
    y = torch.randint(0, classes, (batch,), generator=g)
    student = ModelOutput(logits=s)
    teacher = TeacherOutput(logits=zs[-1], cohort=zs, features={})
    return s, zs, y, student, teacher, SimpleNamespace(labels=y)


def test_ce_matches_reference():
    s, _, y, student, _, batch = make()
    total, parts = CELoss()(student, None, batch)
    assert total.item() == pytest.approx(reference_ce(s, y), rel=1e-5)
    assert set(parts) == {"ce"}


def test_kd_matches_reference():
    s, zs, y, student, teacher, batch = make()
    a, T = 0.3, 4.0
    total, parts = KDLoss(alpha=a, temperature=T)(student, teacher, batch)
    expected = (1 - a) * reference_ce(s, y) + a * reference_kl(s, zs[-1], T)
    assert total.item() == pytest.approx(expected, rel=1e-5)
    assert (parts["ce"] + parts["kd"]).item() == pytest.approx(total.item(), rel=1e-6)


def test_dih_sum_identity():
    """L_DIH = sum_j L_j = (k+1)(1-a) CE + a T^2 sum_j KL_j with the default sum reduction."""
    s, zs, y, student, teacher, batch = make(cohort=4)
    a, T = 0.1, 5.0
    total, parts = DIHLoss(alpha=a, temperature=T)(student, teacher, batch)
    per_classifier = [(1 - a) * reference_ce(s, y) + a * reference_kl(s, z, T) for z in zs]
    identity = 4 * (1 - a) * reference_ce(s, y) + a * sum(reference_kl(s, z, T) for z in zs)
    assert total.item() == pytest.approx(sum(per_classifier), rel=1e-5)
    assert total.item() == pytest.approx(identity, rel=1e-5)
    assert parts["ce"].item() == pytest.approx(4 * (1 - a) * reference_ce(s, y), rel=1e-5)


def test_dih_with_one_classifier_is_kd():
    s, zs, y, student, _, batch = make(cohort=1)
    teacher = TeacherOutput(logits=zs[0], cohort=zs, features={})
    dih, _ = DIHLoss(alpha=0.2, temperature=3.0)(student, teacher, batch)
    kd, _ = KDLoss(alpha=0.2, temperature=3.0)(student, teacher, batch)
    assert dih.item() == pytest.approx(kd.item(), rel=1e-6)


def test_dih_mean_reduction_and_per_classifier_alpha():
    s, zs, y, student, teacher, batch = make(cohort=3)
    alphas, T = [0.5, 0.2, 0.1], 2.0
    total, _ = DIHLoss(alpha=alphas, temperature=T, reduction="mean")(student, teacher, batch)
    expected = sum((1 - a) * reference_ce(s, y) + a * reference_kl(s, z, T) for a, z in zip(alphas, zs)) / 3
    assert total.item() == pytest.approx(expected, rel=1e-5)
    with pytest.raises(UserError, match="exactly 3"):
        DIHLoss(alpha=[0.1, 0.2])(student, teacher, batch)


def test_kd_gradient_matches_closed_form():
    """d/ds of a T^2 KL(p || softmax(s/T)) = a T (q - p) / B, and of CE: (softmax(s) - onehot) / B."""
    s, zs, y, _, teacher, batch = make(batch=3, classes=4)
    s = s.clone().requires_grad_(True)
    a, T = 0.4, 3.0
    total, _ = KDLoss(alpha=a, temperature=T)(ModelOutput(logits=s), teacher, batch)
    total.backward()
    p = torch.softmax(zs[-1] / T, 1)
    q = torch.softmax(s.detach() / T, 1)
    onehot = torch.nn.functional.one_hot(y, 4).float()
    expected = (1 - a) * (torch.softmax(s.detach(), 1) - onehot) / 3 + a * T * (q - p) / 3
    torch.testing.assert_close(s.grad, expected, rtol=1e-5, atol=1e-6)


def test_unknown_loss_lists_known():
    known = ", ".join(sorted(LOSSES))  # the registry: every method loss of dih/losses
    with pytest.raises(UserError, match=f"Unknown loss 'nope'; choose one of: {known}\\.$"):
        build_loss({"name": "nope"})
