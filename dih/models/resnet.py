"""ResNet for CIFAR-sized images (res18, res34), and the basic block and backbone every ResNet here shares."""

import torch.nn as nn
from torch import Tensor

from dih.models.output import ModelOutput


def init_weights(model: nn.Module) -> None:
    """The standard init: Kaiming-normal (fan_out) convs with zero bias, BatchNorm weight 1 and bias 0."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class BasicBlock(nn.Module):
    """Post-activation basic block: ``relu(bn(conv(relu(bn(conv(x))))) + shortcut(x))``.

    The shortcut is the identity, or a 1x1 conv + BN where stride or width change the shape.
    """

    conv_bn_pairs = (("conv1", "bn1"), ("conv2", "bn2"))  # each bn reads only its conv (teacher_side/fold.py)

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU()
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False), nn.BatchNorm2d(out_channels)
            )

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


def make_stage(
    block: type[nn.Module], in_channels: int, out_channels: int, stride: int, n: int
) -> nn.Sequential:
    """``n`` blocks in a row; the first one changes the width and applies the stride."""
    blocks = [block(in_channels, out_channels, stride)]
    blocks += [block(out_channels, out_channels, 1) for _ in range(n - 1)]
    return nn.Sequential(*blocks)


class StagedNet(nn.Module):
    """A stem, a list of stages whose outputs are the named features, global average pooling and a linear
    classifier: the shape the residual zoo models share. Subclasses build ``stem`` and ``stages``, then
    call ``attach_classifier``."""

    stem: nn.Module
    stages: nn.ModuleList

    def attach_classifier(self, widths: tuple[int, ...], num_classes: int) -> None:
        self.stage_names: tuple[str, ...] = tuple(f"stage{i + 1}" for i in range(len(widths)))
        self.stage_channels: tuple[int, ...] = tuple(widths)
        self.embedding_dim: int = widths[-1]
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(self.embedding_dim, num_classes)
        init_weights(self)

    def forward(self, x: Tensor) -> ModelOutput:
        x = self.stem(x)
        features: dict[str, Tensor] = {}
        for name, stage in zip(self.stage_names, self.stages, strict=True):
            x = stage(x)
            features[name] = x
        embedding = self.pool(x).flatten(1)
        features["embedding"] = embedding
        return ModelOutput(self.classifier(embedding), features)


class ResNet(StagedNet):
    """3x3 conv stem + BN + ReLU (no max-pool), stages of basic blocks, adaptive average pool, linear.

    Each stage's output is a named feature (``stage1``, ...); ``embedding`` is the pooled vector the
    classifier reads. Both the CIFAR ResNets (res8..res110) and res18/res34 are instances of this class.
    """

    def __init__(
        self,
        stem_width: int,
        widths: tuple[int, ...],
        strides: tuple[int, ...],
        blocks: tuple[int, ...],
        num_classes: int,
    ) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, stem_width, 3, 1, 1, bias=False), nn.BatchNorm2d(stem_width), nn.ReLU()
        )
        in_widths = (stem_width, *widths[:-1])
        self.stages = nn.ModuleList(
            make_stage(BasicBlock, c_in, c_out, stride, n)
            for c_in, c_out, stride, n in zip(in_widths, widths, strides, blocks, strict=True)
        )
        self.attach_classifier(widths, num_classes)


def res18(num_classes: int) -> ResNet:
    """ResNet-18 for 32x32 inputs: stages 64/128/256/512, [2, 2, 2, 2] blocks."""
    return ResNet(64, (64, 128, 256, 512), (1, 2, 2, 2), (2, 2, 2, 2), num_classes)


def res34(num_classes: int) -> ResNet:
    """ResNet-34 for 32x32 inputs: stages 64/128/256/512, [3, 4, 6, 3] blocks."""
    return ResNet(64, (64, 128, 256, 512), (1, 2, 2, 2), (3, 4, 6, 3), num_classes)
