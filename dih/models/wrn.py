"""Wide ResNets (Zagoruyko and Komodakis) with pre-activation basic blocks; the zoo has WRN-28-2."""

import torch.nn as nn
from torch import Tensor

from dih.models.resnet import StagedNet, make_stage


class PreActBlock(nn.Module):
    """Pre-activation basic block: ``conv(relu(bn(conv(relu(bn(x)))))) + shortcut``, no dropout.

    Where the shape changes, the shortcut is a 1x1 conv applied to the pre-activated input, as in the
    original WRN.
    """

    conv_bn_pairs = (("conv1", "bn2"),)  # bn1 precedes its conv: cannot fold (teacher_side/fold.py)

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.relu = nn.ReLU()
        self.shortcut: nn.Module | None = None
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Conv2d(in_channels, out_channels, 1, stride, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        pre = self.relu(self.bn1(x))
        out = self.conv2(self.relu(self.bn2(self.conv1(pre))))
        return out + (x if self.shortcut is None else self.shortcut(pre))


class WideResNet(StagedNet):
    """3x3 conv 16, three groups of pre-activation blocks at 16k/32k/64k channels, BN + ReLU, pool, linear.

    The named features are the outputs of the three groups; the last is taken after the final BN + ReLU.
    """

    def __init__(self, depth: int, width: int, num_classes: int) -> None:
        super().__init__()
        if (depth - 4) % 6:
            raise ValueError(f"Wide ResNet depth must be 6n + 4, got {depth}")
        n = (depth - 4) // 6
        widths = (16 * width, 32 * width, 64 * width)
        self.stem = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        stages = [
            make_stage(PreActBlock, c_in, c_out, stride, n)
            for c_in, c_out, stride in zip((16, *widths[:-1]), widths, (1, 2, 2), strict=True)
        ]
        # The final BN + ReLU belongs to the last stage, so its mount point sees activated features.
        stages[-1].append(nn.BatchNorm2d(widths[-1]))
        stages[-1].append(nn.ReLU())
        self.stages = nn.ModuleList(stages)
        self.attach_classifier(widths, num_classes)


def wrn28_2(num_classes: int) -> WideResNet:
    """WRN-28-2: four blocks a group at 32/64/128 channels."""
    return WideResNet(28, 2, num_classes)
