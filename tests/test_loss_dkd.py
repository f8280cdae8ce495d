"""DKD (Zhao et al. 2022) against its formula written here independently (explicit probabilities and logs in
float64; the non-target distribution renormalised by hand where mdistiller masks the target logit by 1000),
value and gradient; its warm-up; its plan, which reads the cohort cache as KD's does."""

from types import SimpleNamespace

import pytest
import torch
import yaml
from conftest import ROOT

from dih.config import compose
from dih.losses import build_loss, soft_kl
from dih.models.output import ModelOutput
from dih.plan.chain import plan_run
from dih.teacher_side.side import TeacherOutput

DEFAULTS = yaml.safe_load((ROOT / "conf" / "method" / "dkd.yaml").read_text())["loss"]
OTHER = {"name": "dkd", "ce_weight": 0.5, "alpha": 2.0, "beta": 3.0, "temperature": 2.0, "warmup": 5}


def softmax(x: torch.Tensor) -> torch.Tensor:
    e = torch.exp(x - x.max(dim=1, keepdim=True).values)
    return e / e.sum(dim=1, keepdim=True)


def reference(s, z, y, ce_weight, alpha, beta, temperature, warmup, epoch, name="dkd"):
    """``ce_weight CE + min(epoch / warmup, 1) (alpha TCKD + beta NCKD)``; s, z float64, y int."""
    b, c = s.shape
    target = torch.zeros(b, c, dtype=torch.bool)
    target[torch.arange(b), y] = True
    ce = -torch.log(softmax(s)[target]).mean()
    p_s, p_t = softmax(s / temperature), softmax(z / temperature)
    # TCKD: the KL of the two-way split (target class, every other class)
    b_s = torch.stack([p_s[target], 1 - p_s[target]], dim=1)
    b_t = torch.stack([p_t[target], 1 - p_t[target]], dim=1)
    tckd = (b_t * (torch.log(b_t) - torch.log(b_s))).sum() / b * temperature**2
    # NCKD: the KL of the distributions over the non-target classes, each renormalised to sum to 1
    q_s = p_s[~target].view(b, c - 1) / (1 - p_s[target]).unsqueeze(1)
    q_t = p_t[~target].view(b, c - 1) / (1 - p_t[target]).unsqueeze(1)
    nckd = (q_t * (torch.log(q_t) - torch.log(q_s))).sum() / b * temperature**2
    ramp = min(epoch / warmup, 1.0)
    return ce_weight * ce + ramp * (alpha * tckd + beta * nckd), tckd, nckd


def inputs(batch=6, classes=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    s = torch.randn(batch, classes, generator=g) * 3
    z = torch.randn(batch, classes, generator=g) * 3
    y = torch.randint(0, classes, (batch,), generator=g)
    return s, z, y


@pytest.mark.parametrize("settings", [DEFAULTS, OTHER], ids=["mdistiller", "other"])
@pytest.mark.parametrize("epoch", [1, 10, 20, 30])
def test_value_and_gradient_match_the_formula(settings, epoch):
    s, z, y = inputs(seed=epoch)
    student = s.clone().requires_grad_(True)
    loss = build_loss(settings)
    batch = SimpleNamespace(labels=y, epoch=epoch)
    total, parts = loss(ModelOutput(logits=student), TeacherOutput(z, [z], {}), batch)
    total.backward()

    s64 = s.double().requires_grad_(True)
    rest = {k: v for k, v in settings.items() if k != "name"}
    expected, _, _ = reference(s64, z.double(), y, **rest, epoch=epoch)
    expected.backward()
    assert total.item() == pytest.approx(expected.item(), rel=1e-5)
    assert total.item() == pytest.approx(sum(p.item() for p in parts.values()), rel=1e-6)
    assert set(parts) == {"ce", "dkd"}
    torch.testing.assert_close(student.grad, s64.grad.float(), rtol=1e-4, atol=1e-6)


def test_the_warm_up_ramps_the_dkd_term_over_the_first_20_epochs():
    s, z, y = inputs()
    loss = build_loss(DEFAULTS)
    dkd = {}
    for epoch in (1, 10, 20, 30):
        batch = SimpleNamespace(labels=y, epoch=epoch)
        _, parts = loss(ModelOutput(logits=s), TeacherOutput(z, [z], {}), batch)
        dkd[epoch] = parts["dkd"].item()
    assert dkd[1] == pytest.approx(dkd[30] / 20, rel=1e-6)
    assert dkd[10] == pytest.approx(dkd[30] / 2, rel=1e-6)
    assert dkd[20] == dkd[30] > 0
    _, _, nckd = reference(s.double(), z.double(), y, 1.0, 1.0, 8.0, 4.0, 20, 30)
    assert nckd.item() > 0  # the non-target term is not empty: the check above could fail


def test_tckd_plus_weighted_nckd_is_kd():
    """The paper's decomposition, one example at a time: KD = TCKD + (1 - p_t[y]) NCKD."""
    s, z, y = inputs(batch=1, seed=3)
    _, tckd, nckd = reference(s.double(), z.double(), y, 1.0, 1.0, 8.0, 4.0, 20, 30)
    p_target = softmax(z.double() / 4.0)[0, y[0]]
    kd = soft_kl(s.double(), z.double(), 4.0)
    assert kd.item() == pytest.approx((tckd + (1 - p_target) * nckd).item(), rel=1e-6)  # soft_kl: float32 z


def test_no_gradient_reaches_the_teacher_logits():
    s, z, y = inputs()
    s, z = s.requires_grad_(True), z.clone().requires_grad_(True)
    batch = SimpleNamespace(labels=y, epoch=5)
    total, _ = build_loss(DEFAULTS)(ModelOutput(logits=s), TeacherOutput(z, [z], {}), batch)
    grad_s, grad_z = torch.autograd.grad(total, [s, z], allow_unused=True)
    assert grad_z is None and grad_s.abs().sum() > 0


def plan(*overrides: str) -> dict:
    return {p.name: p.spec for p in plan_run(compose.compose_run(list(overrides)))}


@pytest.mark.parametrize("cache", ["auto", "true", "false"])
def test_dkd_plans_the_cohort_cache_as_kd_does(cache):
    dkd = plan("method=dkd", f"teacher_side.cache={cache}")
    kd = plan("method=kd", f"teacher_side.cache={cache}")
    assert list(dkd) == list(kd)
    assert dkd["teacher"].key == kd["teacher"].key
    if "cohort" in kd:  # one cache of the teacher's logits, read by both students
        assert dkd["cohort"].key == kd["cohort"].key
        assert dkd["student"].upstream() == {"cohort": kd["cohort"].key}
    assert cache == "false" or "cohort" in dkd  # 200 epochs: auto builds it too
    assert dkd["student"].key != kd["student"].key
