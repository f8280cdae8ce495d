"""The in-memory form of a data set: uint8 image tensors plus what is needed to normalise them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported where it computes: the config check imports this package
    import torch

# Per-channel normalisation constants of SPEC section 1 (mean, std), for the data sets that fix them.
NORMALIZATION: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]]] = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    "tiny_imagenet": ((0.4802, 0.4481, 0.3975), (0.2770, 0.2691, 0.2821)),
}


@dataclass
class ImageData:
    """A whole data set as uint8 NCHW tensors (train, validation, test) with labels and channel stats."""

    name: str
    num_classes: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    train_images: torch.Tensor
    train_labels: torch.Tensor
    val_images: torch.Tensor
    val_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    class_names: list[str]

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of every image, for building models at the data's real resolution."""
        _, c, h, w = self.train_images.shape
        return int(c), int(h), int(w)


def channel_stats(images_u8: torch.Tensor, chunk: int = 4096) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std (on the 0..1 scale) of uint8 NCHW images, in chunks to bound memory."""
    import torch

    if images_u8.shape[0] == 0:
        raise ValueError("cannot compute channel statistics of an empty image set")
    c = images_u8.shape[1]
    total = torch.zeros(c, dtype=torch.float64)
    total_sq = torch.zeros(c, dtype=torch.float64)
    for start in range(0, images_u8.shape[0], chunk):
        x = images_u8[start : start + chunk].to(torch.float64).div_(255.0)
        total += x.sum(dim=(0, 2, 3))
        total_sq += x.square().sum(dim=(0, 2, 3))
    count = images_u8.shape[0] * images_u8.shape[2] * images_u8.shape[3]
    mean = total / count
    std = (total_sq / count - mean.square()).clamp_min(0).sqrt()
    return tuple(float(v) for v in mean), tuple(float(v) for v in std)
