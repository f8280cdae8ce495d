"""The model zoo and the DIH heads against SPEC sections 2 and 3: shapes, parameter counts, interface."""

import math

import pytest
import torch
import torch.nn as nn

from dih.errors import UserError
from dih.models import MODEL_NAMES, LinearHeads, ModelOutput, build_model, parameter_count

torch.set_num_threads(2)

NUM_CLASSES = 100

# SPEC s.2: stage outputs at a 32x32 input, and parameter counts at 100 classes.
CIFAR_RES = ((16, 32, 32), (32, 16, 16), (64, 8, 8))
RES = ((64, 32, 32), (128, 16, 16), (256, 8, 8), (512, 4, 4))
SPEC = {
    "res8": (CIFAR_RES, 0.084e6),
    "res14": (CIFAR_RES, 0.181e6),
    "res20": (CIFAR_RES, 0.278e6),
    "res110": (CIFAR_RES, 1.737e6),
    "res18": (RES, 11.22e6),
    "res34": (RES, 21.33e6),
    "vgg11": (((64, 16, 16), (128, 8, 8), (256, 4, 4), (512, 2, 2)), 9.28e6),
    "wrn28_2": (((32, 32, 32), (64, 16, 16), (128, 8, 8)), 1.48e6),
}


@pytest.fixture(scope="module")
def models() -> dict[str, nn.Module]:
    torch.manual_seed(0)
    return {name: build_model(name, NUM_CLASSES) for name in MODEL_NAMES}


def expected_shapes(name: str, size: int) -> list[tuple[int, int, int]]:
    """SPEC's 32x32 stage shapes, spatially scaled to a ``size`` x ``size`` input."""
    scale = size // 32
    return [(c, h * scale, w * scale) for c, h, w in SPEC[name][0]]


def test_zoo_holds_exactly_the_spec_models():
    assert MODEL_NAMES == tuple(sorted(SPEC))


@pytest.mark.parametrize("name", sorted(SPEC))
def test_parameter_count_matches_spec(models, name):
    count = parameter_count(models[name])
    assert abs(count - SPEC[name][1]) / SPEC[name][1] < 0.01, f"{name}: {count} vs {SPEC[name][1]}"


@pytest.mark.parametrize("size", [32, 64])
@pytest.mark.parametrize("name", sorted(SPEC))
def test_forward_logits_and_named_features(models, name, size):
    model = models[name].eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, size, size))
    assert isinstance(out, ModelOutput)
    assert out.logits.shape == (2, NUM_CLASSES)
    k = len(SPEC[name][0])
    stage_names = tuple(f"stage{i + 1}" for i in range(k))
    assert model.stage_names == stage_names
    assert list(out.features) == [*stage_names, "embedding"]
    assert [tuple(out.features[s].shape[1:]) for s in stage_names] == expected_shapes(name, size)
    assert model.stage_channels == tuple(c for c, _, _ in SPEC[name][0])
    # The embedding is exactly what the final linear layer reads.
    assert model.embedding_dim == SPEC[name][0][-1][0]  # for every model here, the last stage's width
    assert out.features["embedding"].shape == (2, model.embedding_dim)
    assert isinstance(model.classifier, nn.Linear)
    assert (model.classifier.in_features, model.classifier.out_features) == (model.embedding_dim, NUM_CLASSES)
    torch.testing.assert_close(model.classifier(out.features["embedding"]), out.logits)


def test_wrn_last_stage_is_after_final_bn_relu(models):
    model = models["wrn28_2"].eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 32, 32))
    assert (out.features["stage3"] >= 0).all()  # after ReLU
    assert (out.features["stage1"] < 0).any()  # a raw pre-activation block sum


def test_features_are_not_modified_in_place_later(models):
    """Every stored feature must still equal what its stage produced (no in-place ReLU downstream)."""
    model = models["res8"].eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        out = model(x)
        stage1 = model.stages[0](model.stem(x))
    torch.testing.assert_close(out.features["stage1"], stage1)


def test_standard_init():
    torch.manual_seed(0)
    model = build_model("res20", 10)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            assert torch.all(m.weight == 1) and torch.all(m.bias == 0)
    conv = model.stages[2][0].conv2  # 64 -> 64, 3x3: kaiming fan_out std = sqrt(2 / (64 * 9))
    assert conv.weight.std().item() == pytest.approx(math.sqrt(2 / (64 * 9)), rel=0.05)
    vgg_conv = build_model("vgg11", 10).stages[0][0]
    assert torch.all(vgg_conv.bias == 0)


def test_backward_reaches_every_parameter(models):
    model = build_model("vgg11", 10).train()
    model(torch.randn(2, 3, 32, 32)).logits.sum().backward()
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.parametrize("size", [32, 64])
@pytest.mark.parametrize("name", sorted(SPEC))
def test_linear_heads_for_model(models, name, size):
    model = models[name]
    heads = LinearHeads.for_model(model, NUM_CLASSES, image_shape=(3, size, size))
    shapes = expected_shapes(name, size)
    assert len(heads) == len(SPEC[name][0])
    assert heads.stage_names == model.stage_names
    assert [h.in_features for h in heads.heads] == [math.prod(s) for s in shapes]
    assert all(h.out_features == NUM_CLASSES for h in heads.heads)
    features = {stage: torch.randn(2, *shape) for stage, shape in zip(model.stage_names, shapes, strict=True)}
    logits = heads(features)
    assert len(logits) == len(heads) and all(t.shape == (2, NUM_CLASSES) for t in logits)


def test_linear_heads_probe_leaves_the_model_as_it_was():
    model = build_model("res8", 10).train()
    bn = model.stem[1]
    running_mean = bn.running_mean.clone()
    heads = LinearHeads.for_model(model, 10)
    assert model.training, "the probe must restore the training flag"
    torch.testing.assert_close(bn.running_mean, running_mean, rtol=0, atol=0)  # the probe ran in eval mode
    assert heads.heads[0].in_features == 16 * 32 * 32  # the default probe is a 32x32 image
    model.eval()
    LinearHeads.for_model(model, 10)
    assert not model.training, "an eval-mode model stays in eval mode"
    with torch.no_grad():
        assert len(heads(model(torch.randn(2, 3, 32, 32)).features)) == 3


def test_linear_heads_keep_the_given_order():
    shapes = {"b": (2, 3, 3), "a": (4, 1, 1)}
    heads = LinearHeads(shapes, num_classes=5)
    assert heads.stage_names == ("b", "a")
    assert [h.in_features for h in heads.heads] == [18, 4]
    features = {"a": torch.randn(3, 4, 1, 1), "b": torch.randn(3, 2, 3, 3)}
    out = heads(features)
    torch.testing.assert_close(out[0], heads.heads[0](features["b"].flatten(1)))
    torch.testing.assert_close(out[1], heads.heads[1](features["a"].flatten(1)))


def test_unknown_model_name_lists_the_known_ones():
    with pytest.raises(UserError) as info:
        build_model("resnet9000", NUM_CLASSES)
    message = str(info.value)
    assert "resnet9000" in message
    assert all(name in message for name in MODEL_NAMES)


def test_nonpositive_class_count_is_a_user_error():
    with pytest.raises(UserError):
        build_model("res8", 0)
