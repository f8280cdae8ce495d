"""The frozen teacher side runs a copy with batch norm folded into the convolutions (and, with bf16, in
bf16): every output a loss reads (logits, heads, tapped features, embeddings) must match the plain model."""

import pytest
import torch
from torch import nn

from dih.models import MODEL_NAMES, build_model
from dih.models.mhkd_heads import MHKDHeads
from dih.models.tofd_aux import TOFDAuxHeads
from dih.teacher_side.fold import fold_batch_norm
from dih.teacher_side.side import Speed, TeacherSide


def trained_like(module: nn.Module, seed: int = 0) -> nn.Module:
    """``module`` in eval mode with batch-norm statistics and affine parameters far from their defaults,
    so a wrong fold cannot pass unnoticed."""
    g = torch.Generator().manual_seed(seed)
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=g) * 0.5)
            m.running_var.copy_(torch.rand(n, generator=g) * 2 + 0.2)
            m.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(n, generator=g) * 0.3)
    return module.eval()


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.double() - b.double()).norm() / b.double().norm()).item()


def batch_norms(module: nn.Module) -> int:
    return sum(isinstance(m, nn.BatchNorm2d) for m in module.modules())


# Batch norms that cannot fold: WRN's pre-activation ones (before their conv) and its final one.
LEFT = {"wrn28_2": 13}


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_folded_model_matches_every_output_of_the_plain_one(name):
    torch.manual_seed(0)
    teacher = trained_like(build_model(name, 10))
    images = torch.randn(4, 3, 32, 32)
    plain = TeacherSide(teacher, speed=Speed(fold=False))(images)
    side = TeacherSide(teacher)
    folded = side(images)
    assert batch_norms(side.run_teacher) == LEFT.get(name, 0) < batch_norms(teacher)
    assert batch_norms(teacher) == batch_norms(build_model(name, 10))  # the given teacher is untouched
    assert relative_error(folded.logits, plain.logits) < 1e-4
    assert folded.features.keys() == plain.features.keys()
    for key, feature in plain.features.items():
        assert relative_error(folded.features[key], feature) < 1e-4, key


@pytest.mark.parametrize("kind", [MHKDHeads, TOFDAuxHeads])
def test_folded_conv_heads_match_and_keep_their_embeddings(kind):
    torch.manual_seed(0)
    teacher = trained_like(build_model("res8", 10))
    heads = trained_like(kind.for_model(teacher, 10), seed=1)
    images = torch.randn(4, 3, 32, 32)
    plain = TeacherSide(teacher, heads, Speed(fold=False))(images)
    side = TeacherSide(teacher, heads)
    folded = side(images)
    assert batch_norms(side.run_heads) == 0 < batch_norms(heads)
    assert len(folded.cohort) == len(plain.cohort) == 3
    for a, b in zip(folded.cohort, plain.cohort, strict=True):
        assert relative_error(a, b) < 1e-4
    assert len(folded.embeddings) == len(plain.embeddings)
    for a, b in zip(folded.embeddings, plain.embeddings, strict=True):
        assert relative_error(a, b) < 1e-4


def test_bf16_copy_matches_autocast_within_bf16_rounding():
    """The converted copy (folded, weights in bf16 once) against what ran before: the plain side under
    bf16 autocast. Both round to bf16's 8 bits of mantissa; what a loss receives is float32."""
    torch.manual_seed(0)
    teacher = trained_like(build_model("res8", 10))
    heads = trained_like(MHKDHeads.for_model(teacher, 10), seed=1)
    images = torch.randn(8, 3, 32, 32)
    fp32 = TeacherSide(teacher, heads, Speed(fold=False))(images)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        autocast = TeacherSide(teacher, heads, Speed(fold=False))(images)
    side = TeacherSide(teacher, heads, Speed(bf16=True))
    converted = side(images)
    assert all(p.dtype == torch.bfloat16 for p in side.run_teacher.parameters())
    assert all(p.dtype == torch.float32 for p in side.teacher.parameters())  # for shapes and new heads
    for a, b, exact in zip(converted.cohort, autocast.cohort, fp32.cohort, strict=True):
        assert a.dtype == torch.float32
        assert relative_error(a, b) < 3e-2 and relative_error(a, exact) < 3e-2
    for key, feature in fp32.features.items():
        assert converted.features[key].dtype == torch.float32
        assert relative_error(converted.features[key], feature) < 3e-2, key
    # and it does round: a copy left in float32 would match to 1e-6, which this tells apart
    assert relative_error(converted.logits, fp32.logits) > 1e-4


def test_the_side_stays_frozen():
    teacher = trained_like(build_model("res8", 10))
    side = TeacherSide(teacher, MHKDHeads.for_model(teacher, 10))
    side.train()
    assert not side.training and not any(m.training for m in side.modules())
    assert not any(p.requires_grad for p in side.parameters())
    out = side(torch.randn(2, 3, 32, 32, requires_grad=True))
    assert not any(t.requires_grad for t in (*out.cohort, *out.features.values()))


def test_fold_keeps_sequential_indices():
    """TOFD reads ``head[:-1]`` and ``head[-1]``: a folded batch norm becomes an Identity in its place."""
    seq = trained_like(nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Linear(2, 2)))
    folded = fold_batch_norm(seq)
    assert len(folded) == len(seq) and isinstance(folded[1], nn.Identity)
    assert isinstance(folded[-1], nn.Linear) and folded[0].bias is not None
