"""MHKD's auxiliary classifiers: one fixed-architecture conv head per mount point (SPEC s.5), used on the
frozen teacher (trained with CE like the DIH heads) and on the student (trained by the MHKD loss)."""

import torch.nn as nn

from dih.models.heads import MountedHeads

WIDTH = 256  # every head's conv and hidden width, whatever the stage's channels


def conv_head(in_channels: int, num_classes: int, width: int = WIDTH) -> nn.Sequential:
    """3x3 conv + BN + ReLU twice, global average pool, linear + ReLU, linear to the classes."""
    return nn.Sequential(
        nn.Conv2d(in_channels, width, 3, padding=1, bias=False),
        nn.BatchNorm2d(width),
        nn.ReLU(inplace=True),
        nn.Conv2d(width, width, 3, padding=1, bias=False),
        nn.BatchNorm2d(width),
        nn.ReLU(inplace=True),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(width, width),
        nn.ReLU(inplace=True),
        nn.Linear(width, num_classes),
    )


class MHKDHeads(MountedHeads):
    """One ``conv_head`` per named stage; ``feature_shapes`` (stage -> ``(C, H, W)``, shallow to deep) fixes
    the order of the heads and of the logits ``forward`` returns. Same interface as ``LinearHeads``."""

    def __init__(self, feature_shapes: dict[str, tuple[int, ...]], num_classes: int) -> None:
        super().__init__()
        if not feature_shapes:
            raise ValueError("MHKDHeads needs at least one feature shape")
        self.stage_names = tuple(feature_shapes)
        self.feature_shapes = {k: tuple(v) for k, v in feature_shapes.items()}
        self.heads = nn.ModuleList(conv_head(s[0], num_classes) for s in self.feature_shapes.values())
