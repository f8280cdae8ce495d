"""The feature-based baselines (AT, FitNets' hint, MHKD): their structure (pairing, pooling, regressors,
heads), and their gradients through real zoo models with the teacher run with autograd on. Their values
against the reference code are in test_faithful_features.py."""

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
from dih.losses.pairing import match_spatial, pair_stages, pool_to
from dih.models import feature_shapes, heads_class
from dih.models.heads import HeadsOnFrozen
from dih.models.mhkd_heads import MHKDHeads, head_paddings
from dih.models.output import ModelOutput
from dih.models.zoo import build_model
from dih.teacher_side.side import TeacherOutput


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
    # a non-integer ratio averages adaptive pooling's windows (without its nondeterministic CUDA backward)
    c = torch.randn(2, 3, 6, 6, generator=gen)
    pc, pb = match_spatial(c, b)
    torch.testing.assert_close(pc, F.adaptive_avg_pool2d(c, 4))


NON_INTEGER = [(7, 7, (4, 4)), (7, 5, (3, 2)), (10, 9, (4, 4)), (5, 8, (3, 4))]  # (5, 8): rows only


@pytest.mark.parametrize(("h", "w", "size"), NON_INTEGER)
def test_pool_to_a_non_integer_ratio_is_adaptive_pooling(h, w, size):
    gen = torch.Generator().manual_seed(1)
    f = torch.randn(2, 3, h, w, generator=gen, dtype=torch.float64)
    got, want = f.clone().requires_grad_(), f.clone().requires_grad_()
    g = torch.randn(2, 3, *size, generator=gen, dtype=torch.float64)
    pooled = pool_to(got, size)
    torch.testing.assert_close(pooled, F.adaptive_avg_pool2d(want, size))
    (pooled * g).sum().backward()
    (F.adaptive_avg_pool2d(want, size) * g).sum().backward()
    torch.testing.assert_close(got.grad, want.grad)


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


# ---- MHKD heads -----------------------------------------------------------------------------------------


def test_mhkd_head_architecture():
    """3x3 conv to 256 + BN + ReLU, 3x3 conv 256 + BN + ReLU, pool, linear 256 + ReLU, linear to classes."""
    heads = MHKDHeads({"stage1": (16, 32, 32), "stage2": (32, 16, 16), "stage3": (64, 8, 8)}, 7)
    names = ["Conv2d", "BatchNorm2d", "ReLU"] * 2 + [
        "AdaptiveAvgPool2d",
        "Flatten",
        "Linear",
        "ReLU",
        "Linear",
    ]
    assert heads.stage_names == ("stage1", "stage2") and len(heads) == 2  # none on the deepest stage
    for head, c in zip(heads.heads, (16, 32)):
        assert [type(m).__name__ for m in head] == names
        assert head[0].in_channels == c and head[0].kernel_size == (3, 3) and head[3].kernel_size == (3, 3)
        assert head[0].bias is None and head[3].bias is None
        assert (head[0].padding, head[3].padding) == ((0, 0), (0, 0))  # unpadded, as the original
        assert (head[0].out_channels, head[3].out_channels) == (256, 256)
        assert (head[8].in_features, head[8].out_features, head[10].out_features) == (256, 256, 7)
    out = heads({"stage1": torch.randn(3, 16, 32, 32), "stage2": torch.randn(3, 32, 16, 16)})
    assert [tuple(z.shape) for z in out] == [(3, 7), (3, 7)]


def test_mhkd_head_paddings_only_where_a_map_is_too_small():
    # 5 and up: two unpadded convs fit; 4 and 3: the first is padded (the original's choice for res34's 4x4
    # stage); 2 and 1: both are
    assert {s: head_paddings(s) for s in (64, 32, 16, 8, 5, 4, 3, 2, 1)} == {
        64: (0, 0),
        32: (0, 0),
        16: (0, 0),
        8: (0, 0),
        5: (0, 0),
        4: (1, 0),
        3: (1, 0),
        2: (1, 1),
        1: (1, 1),
    }
    for size in (5, 4, 3, 2, 1):  # every map leaves at least one position to pool
        heads = MHKDHeads({"a": (3, size, size), "b": (3, 1, 1)}, 4)
        assert heads({"a": torch.randn(2, 3, size, size)})[0].shape == (2, 4)


@pytest.mark.parametrize(
    "name, side, paddings",
    [
        ("res110", 32, [(0, 0), (0, 0)]),  # 32x32, 16x16
        ("res8", 32, [(0, 0), (0, 0)]),
        ("vgg11", 32, [(0, 0), (0, 0), (1, 0)]),  # 16x16, 8x8, 4x4
        ("vgg11", 64, [(0, 0), (0, 0), (0, 0)]),  # Tiny-ImageNet: 32x32, 16x16, 8x8
    ],
)
def test_mhkd_heads_for_model_skip_the_deepest_stage(name, side, paddings):
    """The heads stage builds them through ``HEAD_KINDS["mhkd"].for_model`` with every mount point."""
    model = build_model(name, 10).train()
    heads = heads_class("mhkd").for_model(model, 10, (3, side, side))
    assert heads.stage_names == model.stage_names[:-1] and len(heads) == len(model.stage_names) - 1
    assert tuple(heads.feature_shapes) == model.stage_names  # every mount point, so it rebuilds the same
    assert [(h[0].padding[0], h[3].padding[0]) for h in heads.heads] == paddings
    assert model.training  # the probe restored the flag
    rebuilt = MHKDHeads(heads.feature_shapes, 10)
    rebuilt.load_state_dict(heads.state_dict())
    if name != "res110":  # res110 only for its structure: its forward is slow on the CPU
        with torch.no_grad():
            logits = HeadsOnFrozen(lambda x: model.eval()(x), heads.eval())(torch.randn(2, 3, side, side))
        assert [tuple(z.shape) for z in logits.heads] == [(2, 10)] * len(paddings)


def test_mhkd_student_heads_pair_with_teacher_heads_from_the_shallowest():
    res8 = {"stage1": (16, 32, 32), "stage2": (32, 16, 16), "stage3": (64, 8, 8)}
    res34 = {"stage1": (64, 32, 32), "stage2": (128, 16, 16), "stage3": (256, 8, 8), "stage4": (512, 4, 4)}
    vgg = {"stage1": (64, 16, 16), "stage2": (128, 8, 8), "stage3": (256, 4, 4), "stage4": (512, 2, 2)}
    loss = MHKDLoss(context(res8, res34))  # the teacher has 3 heads, the student 2: they meet heads 1-2
    assert loss.heads.stage_names == ("stage1", "stage2") and loss.teacher_index == [0, 1]
    loss = MHKDLoss(context(vgg, res8))  # a student deeper than its teacher heads only its paired stages
    assert loss.heads.stage_names == ("stage1", "stage2") and loss.teacher_index == [0, 1]


def test_mhkd_without_teacher_heads_is_a_user_error():
    shapes = {"stage1": (4, 8, 8), "stage2": (4, 4, 4)}
    loss = MHKDLoss(context(shapes, shapes))
    teacher = TeacherOutput(logits=torch.zeros(2, 5), cohort=[torch.zeros(2, 5)], features={})
    out = ModelOutput(
        torch.zeros(2, 5), {"stage1": torch.randn(2, 4, 8, 8), "stage2": torch.randn(2, 4, 4, 4)}
    )
    with pytest.raises(UserError, match="teacher heads"):
        loss(out, teacher, SimpleNamespace(labels=torch.tensor([0, 1])))


# ---- gradients through real models, the teacher run with autograd on ------------------------------------


def setup(loss_name: str, teacher_name: str, **settings):
    """A res8 student and a teacher (plus MHKD heads) run with autograd on and trainable parameters, as a
    TeacherOutput: only the loss's own detaching can keep gradient from the teacher side."""
    torch.manual_seed(0)
    student, teacher = build_model("res8", 10).train(), build_model(teacher_name, 10).eval()
    x, y = torch.randn(4, 3, 32, 32), torch.randint(0, 10, (4,))
    t_heads = heads_class("mhkd").for_model(teacher, 10).eval() if loss_name == "mhkd" else None
    t_out = teacher(x)
    head_logits = t_heads(t_out.features) if t_heads is not None else []
    side = TeacherOutput(logits=t_out.logits, cohort=[*head_logits, t_out.logits], features=t_out.features)
    assert side.logits.requires_grad and side.features["stage1"].requires_grad  # the check can fail
    ctx = LossContext(
        10,
        100,
        (3, 32, 32),
        feature_shapes(student, (3, 32, 32)),
        student.stage_names,
        feature_shapes(teacher, (3, 32, 32)),
        teacher.stage_names,
    )
    loss = {"at": ATLoss, "hint": HintLoss, "mhkd": MHKDLoss}[loss_name](ctx, **settings)
    total, parts = loss(student(x), side, SimpleNamespace(labels=y, index=torch.arange(4)))
    frozen = [*teacher.parameters(), *(t_heads.parameters() if t_heads is not None else [])]
    return student, frozen, loss, total, parts


def nonzero_grad(p: nn.Parameter) -> bool:
    return p.grad is not None and p.grad.abs().sum().item() > 0


CASES = [("at", {}), ("hint", {"hint": "stage2", "guided": "stage1"}), ("mhkd", {})]


@pytest.mark.parametrize("teacher_name", ["res14", "res18"])
@pytest.mark.parametrize("loss_name, settings", CASES, ids=[c[0] for c in CASES])
def test_gradients_reach_student_and_loss_never_teacher(loss_name, settings, teacher_name):
    student, frozen, loss, total, parts = setup(loss_name, teacher_name, **settings)
    feature_term = {"at": "at", "hint": "hint", "mhkd": "heads"}[loss_name]
    (g,) = torch.autograd.grad(parts[feature_term], student.stem[0].weight, retain_graph=True)
    assert g.abs().sum().item() > 0  # the feature term itself, not only CE, reaches the student's first layer
    total.backward()
    assert all(p.grad is None for p in frozen)  # neither the teacher nor its heads
    assert nonzero_grad(student.stem[0].weight)
    if loss_name == "hint":  # only the student up to its guided layer learns in the hint stage
        assert student.classifier.weight.grad is None
        assert all(p.grad is None for p in student.stages[1].parameters())
    else:
        assert nonzero_grad(student.classifier.weight) and nonzero_grad(student.stages[2][0].conv1.weight)
    own = list(loss.parameters())
    assert bool(own) == (loss_name != "at")  # AT has nothing to learn; the regressor and student heads do
    assert all(p.grad is not None for p in own) and (not own or any(nonzero_grad(p) for p in own))
    assert torch.isfinite(total) and total.item() == pytest.approx(
        sum(p.item() for p in parts.values()), rel=1e-6
    )
