"""MHKD's auxiliary classifiers (the original DIH repository's ``Middle_Logit_Generator_mhkd``): one
fixed-architecture conv head per mount point but the deepest (SPEC s.5), used on the frozen teacher
(trained with CE like the DIH heads) and on the student (trained by the MHKD loss)."""

import torch.nn as nn

from dih.models.heads import MountedHeads

WIDTH = 256  # every head's conv and hidden width, whatever the stage's channels


def head_paddings(size: int) -> tuple[int, int]:
    """Paddings of a head's two 3x3 convs on a ``size`` x ``size`` map: none, as the original, where the
    map is large enough (5 or more); the first conv padded 1 where it is not (the original's choice for
    res34's 4x4 stage); both padded where even that leaves nothing for the second (a 2x2 or 1x1 map)."""
    first = 0 if size >= 5 else 1
    after_first = size - 2 + 2 * first
    return first, 0 if after_first >= 3 else 1


def conv_head(shape: tuple[int, ...], num_classes: int, width: int = WIDTH) -> nn.Sequential:
    """For a ``(C, H, W)`` map: 3x3 conv (no bias) + BN + ReLU twice, global average pool, linear + ReLU,
    linear to the classes; PyTorch's default initialisation, as the original."""
    first, second = head_paddings(min(shape[1:]))
    return nn.Sequential(
        nn.Conv2d(shape[0], width, 3, padding=first, bias=False),
        nn.BatchNorm2d(width),
        nn.ReLU(inplace=True),
        nn.Conv2d(width, width, 3, padding=second, bias=False),
        nn.BatchNorm2d(width),
        nn.ReLU(inplace=True),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(width, width),
        nn.ReLU(inplace=True),
        nn.Linear(width, num_classes),
    )


class MHKDHeads(MountedHeads):
    """One ``conv_head`` for each mount point but the deepest, whose classifier is the model's own.

    ``feature_shapes`` maps every mount point, shallow to deep, to ``(C, H, W)``, the deepest included, so
    ``MHKDHeads(heads.feature_shapes, n)`` rebuilds the same module; ``stage_names`` lists the k-1 stages
    that carry a head, in the order of the logits. Same interface as ``LinearHeads``.
    """

    version = 2  # bump when what the heads compute changes (docs/versions.md)

    def __init__(self, feature_shapes: dict[str, tuple[int, ...]], num_classes: int) -> None:
        super().__init__()
        if len(feature_shapes) < 2:
            raise ValueError("MHKDHeads needs at least two mount points (the deepest carries no head)")
        self.feature_shapes = {k: tuple(v) for k, v in feature_shapes.items()}
        self.stage_names = tuple(self.feature_shapes)[:-1]
        self.heads = nn.ModuleList(conv_head(self.feature_shapes[s], num_classes) for s in self.stage_names)
