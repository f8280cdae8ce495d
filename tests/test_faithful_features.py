"""AT, FitNets' hint and MHKD against their reference code (SPEC s.5), value and gradient.

The references are written here from the reference code itself, in float64 with plain torch, never with
this project's functions: RepDistiller's ``Attention`` (distiller_zoo/AT.py, zipped over ``feat[1:-1]`` as
train_student.py does), its ``ConvReg`` (models/util.py) and ``HintLoss`` (distiller_zoo/FitNet.py, an
``nn.MSELoss``), and the original DIH repository's MHKD heads (``Middle_Logit_Generator_mhkd``) and
training loop (``kd_loss`` per head pair, weighed by ``mhkd_beta``). Both sides see identical tensors of
realistic shapes (batch 16, CIFAR-100, the zoo's stage outputs); values and gradients on the student's
logits and features must agree to 1e-5 relative.
"""

from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dih.errors import UserError
from dih.losses import ATLoss, HintLoss, MHKDLoss
from dih.losses.context import LossContext
from dih.models import build_model, feature_shapes
from dih.models.output import ModelOutput
from dih.teacher_side.side import TeacherOutput

B, CLASSES = 16, 100
# Stage outputs (C, H, W) at 32x32 inputs; every CIFAR ResNet (res8 ... res110) has res8's.
SHAPES = {
    "res8": {"stage1": (16, 32, 32), "stage2": (32, 16, 16), "stage3": (64, 8, 8)},
    "res34": {"stage1": (64, 32, 32), "stage2": (128, 16, 16), "stage3": (256, 8, 8), "stage4": (512, 4, 4)},
    "vgg11": {"stage1": (64, 16, 16), "stage2": (128, 8, 8), "stage3": (256, 4, 4), "stage4": (512, 2, 2)},
}
SHAPES["res110"] = SHAPES["res8"]


def randn(*shape, seed: int, scale: float = 1.0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)) * scale


def leaf(t: torch.Tensor, dtype=torch.float32) -> torch.Tensor:
    return t.detach().to(dtype).clone().requires_grad_(True)


def close(actual: torch.Tensor, expected: torch.Tensor, scale: float | None = None) -> None:
    """Equal to 1e-5 relative to the expected tensor's scale, or to ``scale`` where given (float32 against
    a float64 reference)."""
    expected = expected.detach().to(actual.dtype)
    scale = expected.abs().max().item() if scale is None else scale
    torch.testing.assert_close(actual.detach(), expected, rtol=1e-5, atol=1e-5 * scale + 1e-30)


def context(student: str, teacher: str) -> LossContext:
    return LossContext(
        num_classes=CLASSES,
        num_train=1000,
        image_shape=(3, 32, 32),
        student_features=dict(SHAPES[student]),
        student_stages=tuple(SHAPES[student]),
        teacher_features=dict(SHAPES[teacher]),
        teacher_stages=tuple(SHAPES[teacher]),
    )


def features(model: str, seed: int, batch: int = B) -> dict:
    """Post-ReLU-like stage outputs (non-negative), one fixed random tensor per stage."""
    return {
        name: randn(batch, *shape, seed=seed + i).relu()
        for i, (name, shape) in enumerate(SHAPES[model].items())
    }


def test_the_shapes_here_are_the_zoo_models():
    for name in ("res8", "res34", "vgg11"):
        shapes = feature_shapes(build_model(name, CLASSES), (3, 32, 32))
        assert {k: v for k, v in shapes.items() if k != "embedding"} == SHAPES[name]


# ------------------------------------------------------------------------------------------------- AT


def reference_at_loss(f_s, f_t, p=2):
    """RepDistiller's ``Attention.at_loss``: the larger map adaptive-pooled to the smaller's height, then the
    mean squared difference of the two L2-normalised channel means of f^p."""
    s_H, t_H = f_s.shape[2], f_t.shape[2]
    if s_H > t_H:
        f_s = F.adaptive_avg_pool2d(f_s, (t_H, t_H))
    elif s_H < t_H:
        f_t = F.adaptive_avg_pool2d(f_t, (s_H, s_H))

    def at(f):
        return F.normalize(f.pow(p).mean(1).view(f.size(0), -1))

    return (at(f_s) - at(f_t)).pow(2).mean()


def reference_at(logits, target, g_s, g_t, beta=1000.0):
    """train_student.py with ``--distill attention -r 1 -a 0 -b 1000``: CE + beta * sum of the per-pair losses
    over ``zip(feat_s[1:-1], feat_t[1:-1])`` (the stage outputs, zipped from the shallowest)."""
    return F.cross_entropy(logits, target) + beta * sum(reference_at_loss(a, b) for a, b in zip(g_s, g_t))


@pytest.mark.parametrize(
    "student, teacher",
    [("res8", "res110"), ("res8", "res34"), ("res8", "vgg11"), ("vgg11", "res110")],
    ids=["equal", "res34-more-stages", "student-larger", "teacher-larger"],
)
def test_at_equals_repdistiller(student, teacher):
    s_feat, t_feat = features(student, seed=10), features(teacher, seed=20)
    logits, y = (
        randn(B, CLASSES, seed=1, scale=3.0),
        torch.randint(0, CLASSES, (B,), generator=torch.Generator().manual_seed(2)),
    )
    s32 = {k: leaf(v) for k, v in s_feat.items()}
    s64 = {k: leaf(v, torch.float64) for k, v in s_feat.items()}
    z32, z64 = leaf(logits), leaf(logits, torch.float64)

    loss = ATLoss(context(student, teacher))
    teacher_out = TeacherOutput(randn(B, CLASSES, seed=3), [], t_feat)
    total, _ = loss(ModelOutput(z32, s32), teacher_out, SimpleNamespace(labels=y))
    expected = reference_at(z64, y, list(s64.values()), [f.double() for f in t_feat.values()])

    close(total, expected)
    names = list(s32)[: min(len(s_feat), len(t_feat))]  # a student stage left unpaired gets no gradient
    got = torch.autograd.grad(total, [z32, *(s32[n] for n in names)])
    want = torch.autograd.grad(expected, [z64, *(s64[n] for n in names)])
    for name, g, w in zip(["logits", *names], got, want):
        assert g.abs().sum() > 0, name
        close(g, w)


def test_at_pairs_res34_with_res8_from_the_shallowest():
    """res34 (4 stages) over res8 (3): the lists zip, so stages 1-3 meet stages 1-3, maps of equal size."""
    loss = ATLoss(context("res8", "res34"))
    assert loss.pairs == [("stage1", "stage1"), ("stage2", "stage2"), ("stage3", "stage3")]
    for s, t in loss.pairs:
        assert SHAPES["res8"][s][1:] == SHAPES["res34"][t][1:]


# -------------------------------------------------------------------------------------------- FitNets


class ReferenceConvReg(nn.Module):
    """RepDistiller's ``ConvReg`` (models/util.py), with its default ``use_relu=True``, as FitNets uses it."""

    def __init__(self, s_shape, t_shape, use_relu=True):
        super().__init__()
        self.use_relu = use_relu
        _, s_C, s_H, s_W = s_shape
        _, t_C, t_H, t_W = t_shape
        if s_H == 2 * t_H:
            self.conv = nn.Conv2d(s_C, t_C, kernel_size=3, stride=2, padding=1)
        elif s_H * 2 == t_H:
            self.conv = nn.ConvTranspose2d(s_C, t_C, kernel_size=4, stride=2, padding=1)
        elif s_H >= t_H:
            self.conv = nn.Conv2d(s_C, t_C, kernel_size=(1 + s_H - t_H, 1 + s_W - t_W))
        else:
            raise NotImplementedError
        self.bn = nn.BatchNorm2d(t_C)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        x = self.conv(x)
        return self.relu(self.bn(x)) if self.use_relu else self.bn(x)


HINT_CASES = {
    # (student, guided, teacher, hint): the default pair, identical shapes, keeps no regressor
    "identical": ("res8", "stage1", "res110", "stage1"),
    "student-twice": ("res8", "stage1", "res110", "stage2"),  # 32x32 -> 16x16: 3x3 stride 2
    "student-half": ("res8", "stage2", "res110", "stage1"),  # 16x16 -> 32x32: transposed 4x4 stride 2
    "channels-only": ("res8", "stage1", "res34", "stage1"),  # 16 -> 64 channels at 32x32: 1x1
}


@pytest.mark.parametrize("case", list(HINT_CASES))
def test_hint_equals_repdistiller(case):
    """The value in float32; value and gradients also with the loss in float64, since a float32 ReLU mask
    after BN can flip where a pre-activation is within rounding of 0 (then one element's gradient moves)."""
    student, guided, teacher, hint = HINT_CASES[case]
    torch.manual_seed(0)
    loss = HintLoss(context(student, teacher), hint=hint, guided=guided).train()
    g = randn(B, *SHAPES[student][guided], seed=30).relu()
    h = randn(B, *SHAPES[teacher][hint], seed=31).relu()
    g64 = leaf(g, torch.float64)

    own, reference_params = list(loss.parameters()), []
    if case == "identical":  # the original DIH code: MSE straight between the two maps
        assert not own
        expected = nn.MSELoss()(g64, h.double())
    else:
        reference = ReferenceConvReg((B, *SHAPES[student][guided]), (B, *SHAPES[teacher][hint])).double()
        conv, bn = loss.regressor.proj[0], loss.regressor.proj[1]
        assert type(conv) is type(reference.conv)
        assert (conv.kernel_size, conv.stride, conv.padding) == (
            reference.conv.kernel_size,
            reference.conv.stride,
            reference.conv.padding,
        )
        with torch.no_grad():  # the project's initial weights, in the reference's own modules
            reference.conv.weight.copy_(conv.weight)
            reference.conv.bias.copy_(conv.bias)
            reference.bn.weight.copy_(bn.weight)
            reference.bn.bias.copy_(bn.bias)
        expected = nn.MSELoss()(reference(g64), h.double())  # train-mode BN on both sides
        reference_params = list(reference.parameters())
    want = torch.autograd.grad(expected, [g64, *reference_params])

    for dtype in (torch.float32, torch.float64):
        loss = loss.to(dtype)
        g_in = leaf(g, dtype)
        student_out = ModelOutput(torch.zeros(B, CLASSES, dtype=dtype), {guided: g_in})
        teacher_out = TeacherOutput(torch.zeros(B, CLASSES), [], {hint: h.to(dtype)})
        total, parts = loss(student_out, teacher_out, None)
        assert parts["hint"] is total
        close(total, expected)
        if dtype == torch.float64:
            got = torch.autograd.grad(total, [g_in, *loss.parameters()])
            assert got[0].abs().sum() > 0
            close(got[0], want[0])
            # the regressor's parameters: the conv bias, under train-mode BN, has a gradient of 0 up to
            # rounding, so all are compared at the scale of the largest
            scale = max((w.abs().max().item() for w in want[1:]), default=0.0)
            for a, b in zip(got[1:], want[1:]):
                close(a, b, scale)


def test_hint_with_a_student_map_too_small_says_what_to_choose():
    # res8's 8x8 stage3 cannot be regressed to res110's 32x32 stage1 (a quarter, not a half)
    with pytest.raises(UserError, match="choose other hint/guided layers"):
        HintLoss(context("res8", "res110"), hint="stage1", guided="stage3")


# ----------------------------------------------------------------------------------------------- MHKD


class ReferenceHead(nn.Module):
    """The DIH repository's ``Middle_Logit_Generator_mhkd``: conv_1 (3x3, no bias, ``padding``), BN, ReLU,
    conv_2 (3x3, no bias, unpadded), BN, ReLU, adaptive average pool, linear 256 + ReLU, linear."""

    def __init__(self, in_channels, num_classes, middle_dimension=256, padding=0):
        super().__init__()
        self.conv_1 = nn.Conv2d(in_channels, middle_dimension, kernel_size=3, bias=False, padding=padding)
        self.bn_1 = nn.BatchNorm2d(middle_dimension)
        self.conv_2 = nn.Conv2d(middle_dimension, middle_dimension, kernel_size=3, bias=False)
        self.bn_2 = nn.BatchNorm2d(middle_dimension)
        self.relu = nn.ReLU(inplace=True)
        self.linear_1 = nn.Linear(middle_dimension, middle_dimension)
        self.linear_2 = nn.Linear(middle_dimension, num_classes)

    def forward(self, x):
        x = self.relu(self.bn_1(self.conv_1(x)))
        x = self.relu(self.bn_2(self.conv_2(x)))
        x = F.adaptive_avg_pool2d(x, (1, 1))
        x = x.view(x.size(0), -1)
        return self.linear_2(self.relu(self.linear_1(x)))


def copy_head(project_head: nn.Sequential, reference: ReferenceHead) -> None:
    """Our ``conv_head`` is conv, BN, ReLU, conv, BN, ReLU, pool, flatten, linear, ReLU, linear."""
    pairs = [(0, reference.conv_1), (1, reference.bn_1), (3, reference.conv_2), (4, reference.bn_2)]
    pairs += [(8, reference.linear_1), (10, reference.linear_2)]
    with torch.no_grad():
        for i, module in pairs:
            for name, tensor in module.named_parameters():
                tensor.copy_(getattr(project_head[i], name))


def reference_kd_loss(out_s, out_t, target, alpha, temperature):
    """The DIH repository's ``kd_loss``: batchmean KL(log_softmax(s/T), softmax(z/T)) a T^2 + (1 - a) CE."""
    kl = nn.KLDivLoss(reduction="batchmean")(
        F.log_softmax(out_s / temperature, dim=1), F.softmax(out_t / temperature, dim=1)
    )
    return kl * (alpha * temperature * temperature) + F.cross_entropy(out_s, target) * (1.0 - alpha)


def reference_mhkd(s_final, t_final, s_heads, t_heads, target, alpha=0.1, temperature=4.0, beta=0.5):
    """mhkd_training.py's loop over the zipped (final, head 1, head 2, ...) dictionaries, student side only:
    kd_loss on the final logits, plus mhkd_beta * kd_loss per head pair with the same alpha. (Its CE on
    the teacher heads trains them jointly there; here they are trained before, so that term is absent.)"""
    loss = reference_kd_loss(s_final, t_final, target, alpha, temperature)
    for h_s, h_t in zip(s_heads, t_heads):
        loss = loss + beta * reference_kd_loss(h_s, h_t, target, alpha, temperature)
    return loss


@pytest.mark.parametrize("teacher", ["res110", "res34"])
def test_mhkd_equals_the_dih_repository(teacher):
    """The value in float32; value and gradients also with the loss in float64 (see the FitNets test)."""
    batch = 8  # the heads' 256-channel convs at 30x30 are the cost here
    torch.manual_seed(0)
    loss = MHKDLoss(context("res8", teacher)).train()
    assert loss.heads.stage_names == ("stage1", "stage2") and loss.teacher_index == [0, 1]
    s_feat = features("res8", seed=40, batch=batch)
    logits = randn(batch, CLASSES, seed=41, scale=3.0)
    y = torch.randint(0, CLASSES, (batch,), generator=torch.Generator().manual_seed(42))
    n_heads = len(SHAPES[teacher]) - 1
    cohort = [randn(batch, CLASSES, seed=50 + j, scale=4.0) for j in range(n_heads + 1)]

    references = []
    for name, head in zip(loss.heads.stage_names, loss.heads.heads):
        reference = ReferenceHead(SHAPES["res8"][name][0], CLASSES).double()  # unpadded at 32x32 and 16x16
        copy_head(head, reference)
        references.append(reference)
    s64 = {k: leaf(v, torch.float64) for k, v in s_feat.items()}
    z64 = leaf(logits, torch.float64)
    s_heads = [r(s64[name]) for r, name in zip(references, ("stage1", "stage2"))]
    # the student's heads meet the teacher's first two heads (stages 1 and 2), whatever the teacher's depth
    expected = reference_mhkd(z64, cohort[-1].double(), s_heads, [z.double() for z in cohort[:2]], y)
    want = torch.autograd.grad(expected, [z64, s64["stage1"], s64["stage2"]])

    for dtype in (torch.float32, torch.float64):
        loss = loss.to(dtype)
        s_in = {k: leaf(v, dtype) for k, v in s_feat.items()}
        z_in = leaf(logits, dtype)
        side = TeacherOutput(cohort[-1].to(dtype), [z.to(dtype) for z in cohort], {})
        total, parts = loss(ModelOutput(z_in, s_in), side, SimpleNamespace(labels=y))
        close(total, expected)
        close(sum(parts.values()), expected)
        if dtype == torch.float64:
            got = torch.autograd.grad(total, [z_in, s_in["stage1"], s_in["stage2"]])
            for g, w in zip(got, want):
                assert g.abs().sum() > 0
                close(g, w)
