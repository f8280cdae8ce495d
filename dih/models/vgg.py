"""VGG-11 with batch norm for small images: conv(3x3, bias) + BN + ReLU units, max-pools, one linear layer."""

import torch.nn as nn
from torch import Tensor

from dih.models.output import ModelOutput
from dih.models.resnet import init_weights

# One list per max-pool block; each ends in a 2x2 max-pool. The first four blocks are the mount points.
VGG11_BLOCKS: tuple[tuple[int, ...], ...] = ((64,), (128,), (256, 256), (512, 512), (512, 512))


def vgg_block(in_channels: int, widths: tuple[int, ...]) -> nn.Sequential:
    """conv(3x3, bias) + BN + ReLU for each width, then a 2x2 max-pool."""
    layers: list[nn.Module] = []
    for width in widths:
        layers += [nn.Conv2d(in_channels, width, 3, 1, 1), nn.BatchNorm2d(width), nn.ReLU()]
        in_channels = width
    layers.append(nn.MaxPool2d(2, 2))
    return nn.Sequential(*layers)


class VGG(nn.Module):
    """VGG with BN: the outputs of max-pools 1..k-1 are the named features, the last block feeds the head.

    After the last block an adaptive average pool to 1x1 (a no-op at 32x32) makes 64x64 inputs work.
    """

    def __init__(self, blocks: tuple[tuple[int, ...], ...], num_classes: int) -> None:
        super().__init__()
        stages, in_channels = [], 3
        for widths in blocks:
            stages.append(vgg_block(in_channels, widths))
            in_channels = widths[-1]
        self.stages = nn.ModuleList(stages[:-1])
        self.last_block = stages[-1]
        self.stage_names: tuple[str, ...] = tuple(f"stage{i + 1}" for i in range(len(self.stages)))
        self.stage_channels: tuple[int, ...] = tuple(widths[-1] for widths in blocks[:-1])
        self.embedding_dim: int = in_channels
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(self.embedding_dim, num_classes)
        init_weights(self)

    def forward(self, x: Tensor) -> ModelOutput:
        features: dict[str, Tensor] = {}
        for name, stage in zip(self.stage_names, self.stages, strict=True):
            x = stage(x)
            features[name] = x
        embedding = self.pool(self.last_block(x)).flatten(1)
        features["embedding"] = embedding
        return ModelOutput(self.classifier(embedding), features)


def vgg11(num_classes: int) -> VGG:
    """VGG-11 with BN: 64 M 128 M 256 256 M 512 512 M 512 512 M, then linear 512 -> classes."""
    return VGG(VGG11_BLOCKS, num_classes)
