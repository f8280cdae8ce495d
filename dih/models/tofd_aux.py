"""TOFD's auxiliary classifiers (Zhang et al., NeurIPS 2020). Each mount point except the deepest gets a
stack of depthwise-separable conv blocks that mirrors the rest of the backbone: one block per later
stage, taking that stage's channels and halving the size where the backbone does. Then come a global
average pool and a linear layer. They are used on the frozen teacher (trained with CE, like the DIH heads)
and on the student (trained by the TOFD loss)."""

import torch.nn as nn
from torch import Tensor

from dih.models.heads import MountedHeads
from dih.models.resnet import init_weights


def sep_conv(c_in: int, c_out: int, stride: int) -> nn.Sequential:
    """The reference's ``SepConv``.

    Depthwise 3x3 (``stride``), pointwise 1x1, BN, ReLU; then depthwise 3x3, pointwise 1x1 to ``c_out``,
    BN, ReLU.
    """
    return nn.Sequential(
        nn.Conv2d(c_in, c_in, 3, stride, 1, groups=c_in, bias=False),
        nn.Conv2d(c_in, c_in, 1, bias=False),
        nn.BatchNorm2d(c_in),
        nn.ReLU(),
        nn.Conv2d(c_in, c_in, 3, 1, 1, groups=c_in, bias=False),
        nn.Conv2d(c_in, c_out, 1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(),
    )


def aux_classifier(shapes: list[tuple[int, ...]], num_classes: int) -> nn.Sequential:
    """``shapes`` are the mount point's ``(C, H, W)``, then each later stage's, the deepest last.

    The classifier has one ``sep_conv`` per later stage, then a global average pool and a linear layer.
    """
    blocks = [
        sep_conv(a[0], b[0], 2 if b[1] < a[1] else 1) for a, b in zip(shapes[:-1], shapes[1:], strict=True)
    ]
    return nn.Sequential(
        *blocks, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(shapes[-1][0], num_classes)
    )


class TOFDAuxHeads(MountedHeads):
    """One ``aux_classifier`` for each mount point but the deepest, whose classifier is the model's own.

    ``feature_shapes`` maps every mount point, shallow to deep, to ``(C, H, W)``. It includes the deepest
    one, which gives the target size, so ``TOFDAuxHeads(heads.feature_shapes, n)`` rebuilds the same
    module. ``stage_names`` lists the k-1 stages that carry a head; their order is the order of the logits.
    """

    def __init__(self, feature_shapes: dict[str, tuple[int, ...]], num_classes: int) -> None:
        super().__init__()
        if len(feature_shapes) < 2:
            raise ValueError("TOFDAuxHeads needs at least two mount points (the deepest has no aux head)")
        self.feature_shapes = {k: tuple(v) for k, v in feature_shapes.items()}
        names, shapes = list(self.feature_shapes), list(self.feature_shapes.values())
        self.stage_names = tuple(names[:-1])
        self.heads = nn.ModuleList(aux_classifier(shapes[i:], num_classes) for i in range(len(names) - 1))
        init_weights(self)  # Kaiming-normal (fan_out) convs, as the reference initialises them

    def classify(self, features: dict[str, Tensor]) -> tuple[list[Tensor], list[Tensor]]:
        """Each head's logits and the pooled vector its linear layer reads, shallow to deep."""
        embeddings = [
            head[:-1](features[name]) for name, head in zip(self.stage_names, self.heads, strict=True)
        ]
        return [head[-1](e) for head, e in zip(self.heads, embeddings, strict=True)], embeddings

    def forward(self, features: dict[str, Tensor]) -> list[Tensor]:
        return self.classify(features)[0]
