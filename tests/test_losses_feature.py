"""The feature-based baselines (AT, FitNets' hint, MHKD) against computations written here, and their
gradients through real zoo models."""

import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from dih.errors import UserError
from dih.losses.at import ATLoss, attention_map
from dih.losses.context import LossContext
from dih.losses.fitnets import HintLoss
from dih.losses.mhkd import MHKDLoss
from dih.losses.pairing import match_spatial, pair_stages
from dih.models.mhkd_heads import MHKDHeads
from dih.models.output import ModelOutput
from dih.models.teacher_side import TeacherOutput
from dih.models.zoo import build_model

# ---- independent references, in float64 -------------------------------------------------------------


def ref_ce(s: torch.Tensor, y: torch.Tensor) -> float:
    """Mean over the batch of log(sum_c exp s_c) - s_y."""
    s = s.double()
    return sum(math.log(row.exp().sum().item()) - row[label].item() for row, label in zip(s, y)) / len(y)


def ref_kl(s: torch.Tensor, z: torch.Tensor, T: float) -> float:
    """T^2 * batch mean of sum_c p_c log(p_c / q_c), p = softmax(z/T), q = softmax(s/T)."""
    total = 0.0
    for srow, zrow in zip(s.double() / T, z.double() / T):
        p, q = zrow.exp() / zrow.exp().sum(), srow.exp() / srow.exp().sum()
        total += (p * (p.log() - q.log())).sum().item()
    return T * T * total / len(s)


def context(student: dict, teacher: dict, classes: int = 5) -> LossContext:
    return LossContext(
        num_classes=classes,
        num_train=100,
        image_shape=(3, 32, 32),
        student_features=student,
        student_stages=tuple(student),
        teacher_features=teacher,
        teacher_stages=tuple(teacher),
    )


def random_features(shapes: dict, batch: int, gen: torch.Generator) -> dict:
    return {name: torch.randn(batch, *shape, generator=gen) for name, shape in shapes.items()}


# ---- pairing and pooling --------------------------------------------------------------------------------


def test_stages_pair_from_the_shallowest_up():
    assert pair_stages(("s1", "s2", "s3"), ("t1", "t2", "t3", "t4")) == [
        ("s1", "t1"),
        ("s2", "t2"),
        ("s3", "t3"),
    ]
    assert pair_stages(("s1", "s2", "s3", "s4"), ("t1", "t2")) == [("s1", "t1"), ("s2", "t2")]


def test_match_spatial_pools_the_larger_map_by_blocks():
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(2, 3, 16, 16, generator=gen), torch.randn(2, 5, 4, 4, generator=gen)
    pa, pb = match_spatial(a, b)
    assert pb is b and pa.shape == (2, 3, 4, 4)
    torch.testing.assert_close(pa, a.reshape(2, 3, 4, 4, 4, 4).mean(dim=(3, 5)))
    pb, pa = match_spatial(b, a)  # either argument may be the larger
    assert pb is b and pa.shape == (2, 3, 4, 4)
    # a non-integer ratio falls back to adaptive pooling
    c = torch.randn(2, 3, 6, 6, generator=gen)
    pc, pb = match_spatial(c, b)
    torch.testing.assert_close(pc, F.adaptive_avg_pool2d(c, 4))


# ---- AT -------------------------------------------------------------------------------------------------


def test_attention_map_by_hand():
    f = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]], [[0.0, 0.0], [1.0, 2.0]]]])  # 1 x 2 x 2 x 2
    # p=2: mean over channels of squares = [0.5, 2, 5, 10], norm sqrt(129.25)
    expected2 = torch.tensor([[0.5, 2.0, 5.0, 10.0]]) / math.sqrt(129.25)
    assert torch.allclose(attention_map(f), expected2, atol=1e-7)
    # p=1: channel means = [0.5, 1, 2, 3], norm sqrt(14.25)
    expected1 = torch.tensor([[0.5, 1.0, 2.0, 3.0]]) / math.sqrt(14.25)
    assert torch.allclose(attention_map(f, p=1), expected1, atol=1e-7)


def test_at_of_identical_maps_is_plain_ce():
    gen = torch.Generator().manual_seed(1)
    shapes = {"stage1": (4, 8, 8)}
    feats = {"stage1": torch.randn(2, 4, 8, 8, generator=gen)}
    s, y = torch.randn(2, 5, generator=gen), torch.tensor([1, 3])
    teacher = TeacherOutput(logits=s, cohort=[s], features={"stage1": feats["stage1"] * 3})  # same map
    total, parts = ATLoss(context(shapes, shapes))(ModelOutput(s, feats), teacher, SimpleNamespace(labels=y))
    assert parts["at"].item() == pytest.approx(0.0, abs=1e-6)
    assert total.item() == pytest.approx(F.cross_entropy(s, y).item(), rel=1e-6)


# ---- FitNets' regressor ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "s_shape, t_shape, kind, kernel, stride, padding",
    [
        ((16, 32, 32), (32, 16, 16), nn.Conv2d, (3, 3), (2, 2), (1, 1)),  # student twice the teacher
        ((32, 16, 16), (16, 32, 32), nn.ConvTranspose2d, (4, 4), (2, 2), (1, 1)),  # half
        ((16, 32, 32), (64, 32, 32), nn.Conv2d, (1, 1), (1, 1), (0, 0)),  # equal size, other channels
        ((16, 32, 32), (64, 8, 8), nn.Conv2d, (25, 25), (1, 1), (0, 0)),  # larger by 4: one big kernel
    ],
    ids=["twice", "half", "channels", "quadruple"],
)
def test_hint_regressor_is_repdistillers_convreg(s_shape, t_shape, kind, kernel, stride, padding):
    loss = HintLoss(context({"stage1": s_shape}, {"stage2": t_shape}), hint="stage2", guided="stage1")
    conv, bn, relu = loss.regressor.proj
    assert type(conv) is kind and conv.bias is not None
    assert (conv.kernel_size, conv.stride, conv.padding) == (kernel, stride, padding)
    assert (conv.in_channels, conv.out_channels, bn.num_features) == (s_shape[0], t_shape[0], t_shape[0])
    assert isinstance(relu, nn.ReLU)
    with torch.no_grad():
        assert tuple(loss.regressor(torch.randn(2, *s_shape)).shape[1:]) == t_shape


def test_hint_with_identical_shapes_has_no_regressor():
    shapes = {"stage1": (16, 32, 32)}
    loss = HintLoss(context(shapes, shapes))
    assert isinstance(loss.regressor.proj, nn.Identity) and not list(loss.parameters())


@pytest.mark.parametrize(
    "s_shape, t_shape", [((16, 8, 8), (16, 32, 32)), ((16, 16, 16), (16, 24, 24))], ids=["quarter", "2/3"]
)
def test_hint_student_map_too_small_is_a_user_error(s_shape, t_shape):
    with pytest.raises(UserError, match=r"^FitNets cannot regress .*choose other hint/guided layers\.$"):
        HintLoss(context({"stage1": s_shape}, {"stage1": t_shape}))


def test_hint_unknown_layer_or_a_vector_is_a_user_error():
    shapes = {"stage1": (4, 8, 8), "embedding": (4,)}
    with pytest.raises(UserError, match="stage9"):
        HintLoss(context(shapes, shapes), hint="stage9")
    with pytest.raises(UserError, match="feature maps"):
        HintLoss(context(shapes, {"embedding": (8,)}), hint="embedding", guided="stage1")


# ---- MHKD -----------------------------------------------------------------------------------------------


def test_mhkd_parts_by_hand():
    gen = torch.Generator().manual_seed(4)
    s_shapes = {"stage1": (4, 8, 8), "stage2": (8, 4, 4)}
    t_shapes = {"stage1": (3, 8, 8), "stage2": (5, 4, 4), "stage3": (6, 2, 2)}
    a, T, beta = 0.3, 4.0, 0.5
    loss = MHKDLoss(context(s_shapes, t_shapes), alpha=a, temperature=T, beta=beta)
    assert loss.heads.stage_names == ("stage1", "stage2")
    feats = random_features(s_shapes, 4, gen)
    s, y = torch.randn(4, 5, generator=gen) * 2, torch.tensor([0, 1, 2, 4])
    cohort = [torch.randn(4, 5, generator=gen) * 2 for _ in range(4)]  # 3 teacher heads + final
    teacher = TeacherOutput(logits=cohort[-1], cohort=cohort, features={})
    total, parts = loss(ModelOutput(s, feats), teacher, SimpleNamespace(labels=y))

    h_s = loss.heads(feats)  # train-mode BN: the same batch gives the same logits
    # from the shallowest up: student stage1 meets teacher stage1 (head 0), stage2 meets stage2 (head 1)
    heads = sum(ref_ce(h, y) + ref_kl(h, z, T) for h, z in zip(h_s, cohort[0:2]))
    assert parts["ce"].item() == pytest.approx((1 - a) * ref_ce(s, y), rel=1e-5)
    assert parts["kd"].item() == pytest.approx(a * ref_kl(s, cohort[-1], T), rel=1e-5)
    assert parts["heads"].item() == pytest.approx(beta * heads, rel=1e-5)
    assert total.item() == pytest.approx(sum(p.item() for p in parts.values()), rel=1e-6)


def test_mhkd_without_teacher_heads_is_a_user_error():
    shapes = {"stage1": (4, 8, 8)}
    loss = MHKDLoss(context(shapes, shapes))
    teacher = TeacherOutput(logits=torch.zeros(2, 5), cohort=[torch.zeros(2, 5)], features={})
    out = ModelOutput(torch.zeros(2, 5), {"stage1": torch.randn(2, 4, 8, 8)})
    with pytest.raises(UserError, match="teacher head"):
        loss(out, teacher, SimpleNamespace(labels=torch.tensor([0, 1])))


def test_mhkd_head_architecture():
    """3x3 conv to 256 + BN + ReLU, 3x3 conv 256 + BN + ReLU, pool, linear 256 + ReLU, linear to classes."""
    heads = MHKDHeads({"stage1": (16, 8, 8), "stage2": (32, 4, 4)}, 7)
    names = ["Conv2d", "BatchNorm2d", "ReLU"] * 2 + [
        "AdaptiveAvgPool2d",
        "Flatten",
        "Linear",
        "ReLU",
        "Linear",
    ]
    for head, c in zip(heads.heads, (16, 32)):
        assert [type(m).__name__ for m in head] == names
        assert head[0].in_channels == c and head[0].kernel_size == (3, 3) and head[3].kernel_size == (3, 3)
        assert (head[0].out_channels, head[3].out_channels) == (256, 256)
        assert (head[8].in_features, head[8].out_features, head[10].out_features) == (256, 256, 7)
    out = heads({"stage1": torch.randn(3, 16, 8, 8), "stage2": torch.randn(3, 32, 4, 4)})
    assert [tuple(z.shape) for z in out] == [(3, 7), (3, 7)]


@pytest.mark.parametrize("name, k", [("res110", 3), ("vgg11", 4)])
def test_mhkd_heads_for_model(name, k):
    model = build_model(name, 10).train()
    heads = MHKDHeads.for_model(model, 10, (3, 32, 32))
    assert len(heads) == k and heads.stage_names == model.stage_names
    assert model.training  # the probe restored the flag
    with torch.no_grad():
        logits = heads(model(torch.randn(2, 3, 32, 32)).features)
    assert [tuple(z.shape) for z in logits] == [(2, 10)] * k


# ---- gradients through real models ----------------------------------------------------------------------


def setup(loss_name: str, teacher_name: str, **settings):
    """A res8 student, a frozen teacher run without gradient, the loss, and one batch's loss value."""
    torch.manual_seed(0)
    student, teacher = build_model("res8", 10).train(), build_model(teacher_name, 10).eval()
    x, y = torch.randn(4, 3, 32, 32), torch.randint(0, 10, (4,))
    s_shapes = {k: tuple(v.shape[1:]) for k, v in student(x[:2]).features.items()}
    with torch.no_grad():
        t_out = teacher(x)
        t_heads = MHKDHeads.for_model(teacher, 10).eval()(t_out.features) if loss_name == "mhkd" else []
    t_shapes = {k: tuple(v.shape[1:]) for k, v in t_out.features.items()}
    ctx = LossContext(10, 100, (3, 32, 32), s_shapes, student.stage_names, t_shapes, teacher.stage_names)
    loss = {"at": ATLoss, "hint": HintLoss, "mhkd": MHKDLoss}[loss_name](ctx, **settings)
    t_side = TeacherOutput(logits=t_out.logits, cohort=[*t_heads, t_out.logits], features=t_out.features)
    total, parts = loss(student(x), t_side, SimpleNamespace(labels=y, index=torch.arange(4)))
    return student, teacher, loss, total, parts


def nonzero_grad(p: nn.Parameter) -> bool:
    return p.grad is not None and p.grad.abs().sum().item() > 0


CASES = [("at", {}), ("hint", {"hint": "stage2", "guided": "stage1"}), ("mhkd", {})]


@pytest.mark.parametrize("loss_name, settings", CASES, ids=[c[0] for c in CASES])
def test_gradients_reach_student_and_loss_never_teacher(loss_name, settings):
    student, teacher, loss, total, parts = setup(loss_name, "res14", **settings)
    feature_term = {"at": "at", "hint": "hint", "mhkd": "heads"}[loss_name]
    (g,) = torch.autograd.grad(parts[feature_term], student.stem[0].weight, retain_graph=True)
    assert g.abs().sum().item() > 0  # the feature term itself, not only CE, reaches the student's first layer
    total.backward()
    assert nonzero_grad(student.stem[0].weight)
    if loss_name == "hint":  # only the student up to its guided layer learns in the hint stage
        assert student.classifier.weight.grad is None
        assert all(p.grad is None for p in student.stages[1].parameters())
    else:
        assert nonzero_grad(student.classifier.weight) and nonzero_grad(student.stages[2][0].conv1.weight)
    own = list(loss.parameters())
    assert bool(own) == (loss_name != "at")  # AT has nothing to learn; the regressor and student heads do
    assert all(p.grad is not None for p in own) and (not own or any(nonzero_grad(p) for p in own))
    assert all(p.grad is None for p in teacher.parameters())
    assert torch.isfinite(total) and total.item() == pytest.approx(
        sum(p.item() for p in parts.values()), rel=1e-6
    )


@pytest.mark.parametrize(
    "loss_name, settings", [("at", {}), ("hint", {}), ("mhkd", {})], ids=["at", "hint", "mhkd"]
)
def test_unequal_stage_counts(loss_name, settings):
    """res8 (3 stages) under res18 (4 stages): the shallowest three pair up, with no shape errors."""
    student, _, loss, total, _ = setup(loss_name, "res18", **settings)
    if loss_name == "at":
        assert loss.pairs == [("stage1", "stage1"), ("stage2", "stage2"), ("stage3", "stage3")]
    if loss_name == "mhkd":
        assert loss.teacher_index == [0, 1, 2]
    total.backward()
    assert torch.isfinite(total) and nonzero_grad(student.stem[0].weight)
