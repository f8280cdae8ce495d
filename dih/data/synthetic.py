"""A small learnable synthetic data set, for tests and the offline smoke run (generated in well under 1 s)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from dih.data.images import ImageData, channel_stats
from dih.data.loader import crop_batch

_NOISE = 0.5  # per-pixel noise relative to the prototypes' unit spread
_COARSE = 4  # prototypes are random 4x4 grids upsampled bilinearly: smooth, so a small shift keeps the class


def _balanced_labels(n: int, num_classes: int, g: torch.Generator) -> torch.Tensor:
    """n labels as equal as possible per class, in random order."""
    return (torch.arange(n) % num_classes)[torch.randperm(n, generator=g)]


def _render(protos: torch.Tensor, labels: torch.Tensor, size: int, g: torch.Generator) -> torch.Tensor:
    """Images of `labels`: a randomly shifted crop of the class prototype plus noise, quantised to uint8."""
    n, shift_range = labels.shape[0], protos.shape[-1] - size
    top = torch.randint(0, shift_range + 1, (n,), generator=g)
    left = torch.randint(0, shift_range + 1, (n,), generator=g)
    x = crop_batch(protos[labels], top, left, size, size)
    x = x + _NOISE * torch.randn(x.shape, generator=g)
    return (128.0 + 48.0 * x).round_().clamp_(0, 255).to(torch.uint8)


def make_synthetic(
    num_classes: int = 10, image_size: int = 32, train_size: int = 600, test_size: int = 200, seed: int = 0
) -> ImageData:
    """Per-class smooth random prototypes + per-image noise and shift, fully determined by `seed`."""
    g = torch.Generator().manual_seed(int(seed))
    margin = max(1, image_size // 8)
    coarse = torch.randn(num_classes, 3, _COARSE, _COARSE, generator=g)
    canvas = image_size + 2 * margin
    protos = F.interpolate(coarse, size=(canvas, canvas), mode="bilinear", align_corners=False)
    protos = (protos - protos.mean(dim=(1, 2, 3), keepdim=True)) / protos.std(dim=(1, 2, 3), keepdim=True)
    train_labels = _balanced_labels(train_size, num_classes, g)
    test_labels = _balanced_labels(test_size, num_classes, g)
    train_x = _render(protos, train_labels, image_size, g)
    test_x = _render(protos, test_labels, image_size, g)
    mean, std = channel_stats(train_x)
    return ImageData(
        name="synthetic",
        num_classes=num_classes,
        mean=mean,
        std=std,
        train_images=train_x,
        train_labels=train_labels,
        val_images=train_x[:0],
        val_labels=train_labels[:0],
        test_images=test_x,
        test_labels=test_labels,
        class_names=[f"class{i}" for i in range(num_classes)],
    )
