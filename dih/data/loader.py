"""The on-device loader: the data set lives on the device as uint8 (in host memory when it does not fit
there, each batch moved on its own); crop, flip and normalise run per batch on the device."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from dih.device import decoded_fits, free_bytes

# Part of every trained artifact's key: bump when the order, crops, flips or normalisation a seed gives
# change (docs/versions.md).
VERSION = 1
# The share of the device's free memory a split's images may take, else they stay in host memory: the
# cohort cache's default share (teacher_side.cache_device_share), the rest left for models and activations.
DEVICE_SHARE = 0.5


@dataclass(frozen=True, eq=False)
class EpochPlan:
    """An epoch's draws, on the host, as the loader made them at the epoch's start: what a reader of the
    batches can look ahead with (the cohort cache's host path gathers the next batch's rows early)."""

    order: torch.Tensor  # int64 [N]
    shifts: torch.Tensor  # int64 [N, 2]
    flips: torch.Tensor  # bool [N]
    batch_size: int


@dataclass
class Batch:
    """One batch: normalised images, labels, their positions in the split, and the augmentation used."""

    images: torch.Tensor  # float [B, C, H, W], normalised
    labels: torch.Tensor  # int64 [B]
    index: torch.Tensor  # int64 [B], positions into the split's arrays
    shifts: torch.Tensor  # int64 [B, 2], crop offset (dy, dx) in [-pad, pad]; 0 = centred
    flips: torch.Tensor  # bool [B], horizontally flipped
    epoch: int = 0  # the 1-based training epoch it belongs to (0: evaluation); a loss may depend on it (TOFD)
    plan: EpochPlan | None = None  # its epoch's draws on the host; the batch is plan[start : start + size]
    start: int = 0


def crop_batch(
    images: torch.Tensor, top: torch.Tensor, left: torch.Tensor, height: int, width: int
) -> torch.Tensor:
    """Crop each image n of [N, C, H', W'] at (top[n], left[n]) to height x width.

    ``unfold`` views every height x width window without copying; one index picks each image's window
    (about 3x faster than two gathers on a CPU, same pixels).
    """
    windows = images.unfold(2, height, 1).unfold(3, width, 1)  # [N, C, H'-h+1, W'-w+1, h, w]
    return windows[torch.arange(images.shape[0], device=images.device), :, top, left]


def augment(images_u8: torch.Tensor, shifts: torch.Tensor, flips: torch.Tensor, pad: int) -> torch.Tensor:
    """Zero-pad by `pad`, crop back at offset (dy, dx) + pad, then flip where `flips`: batched, on-device.

    Equal, pixel for pixel, to torchvision's RandomCrop(size, padding=pad) at crop corner (pad+dy, pad+dx)
    followed by hflip when flipped.
    """
    _, _, h, w = images_u8.shape
    shifts = shifts.to(images_u8.device, torch.int64)
    padded = F.pad(images_u8, (pad, pad, pad, pad)) if pad else images_u8
    out = crop_batch(padded, shifts[:, 0] + pad, shifts[:, 1] + pad, h, w)
    flips = flips.to(images_u8.device, torch.bool).view(-1, 1, 1, 1)
    return torch.where(flips, out.flip(3), out)


def channel_stats(mean: Sequence[float] | torch.Tensor, device: torch.device | str) -> torch.Tensor:
    """Per-channel constants as float32 [1, C, 1, 1] on `device`: what ``normalize`` broadcasts against.

    A tensor already so shaped and placed is returned as it is, so a caller that prepares its constants once
    (the DeviceLoader) makes no tensor from Python data, and no host-device copy, per batch.
    """
    return torch.as_tensor(mean, dtype=torch.float32, device=device).view(1, -1, 1, 1)


def normalize(
    images_u8: torch.Tensor,
    mean: Sequence[float] | torch.Tensor,
    std: Sequence[float] | torch.Tensor,
) -> torch.Tensor:
    """uint8 [B, C, H, W] -> float32 (x / 255 - mean) / std per channel.

    ``mean`` and ``std`` are sequences of floats or tensors (e.g. from ``channel_stats``); the same floats
    give the same float32 constants either way, so the result is identical.
    """
    mean_t = channel_stats(mean, images_u8.device)
    std_t = channel_stats(std, images_u8.device)
    return (images_u8.to(torch.float32).div_(255.0).sub_(mean_t)).div_(std_t)


def epoch_seed(seed: int, epoch: int, stream: str = "loader") -> int:
    """A 63-bit generator seed from (seed, epoch) alone, so any epoch can be replayed by itself; each
    ``stream`` (the loader's draws, a task's own) gets its own independent sequence."""
    digest = hashlib.blake2b(f"dih-{stream}:{int(seed)}:{int(epoch)}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)


def images_on_device(nbytes: int, device: torch.device, share: float = DEVICE_SHARE) -> bool:
    """Whether a split of `nbytes` uint8 images is held on `device` (it fits in `share` of its free
    memory), rather than in host memory with each batch gathered there and moved."""
    return decoded_fits(nbytes, free_bytes(device), share)


class DeviceLoader:
    """Batches from uint8 tensors held on `device` (or, where they do not fit in `device_share` of its free
    memory, in host memory: each batch is gathered there, into pinned memory on CUDA, and copied without
    blocking; the same pixels either way); training order and augmentation follow (seed, epoch)."""

    def __init__(
        self,
        images_u8: torch.Tensor,
        labels: torch.Tensor,
        *,
        batch_size: int,
        mean: Sequence[float],
        std: Sequence[float],
        device: torch.device | str,
        train: bool,
        seed: int = 0,
        pad: int = 4,
        device_share: float = DEVICE_SHARE,
    ) -> None:
        if images_u8.dtype != torch.uint8 or images_u8.dim() != 4:
            raise ValueError(
                f"images must be uint8 [N, C, H, W], got {images_u8.dtype} {tuple(images_u8.shape)}"
            )
        if labels.shape[0] != images_u8.shape[0]:
            raise ValueError(f"{images_u8.shape[0]} images but {labels.shape[0]} labels")
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.device = torch.device(device)
        # images already on an accelerator stay there; on the CPU both paths hold the same memory and the
        # share alone decides (which also lets the host path be exercised there)
        already_there = images_u8.device == self.device and self.device.type != "cpu"
        self.on_device = already_there or images_on_device(images_u8.nelement(), self.device, device_share)
        self.images = images_u8.to(self.device) if self.on_device else images_u8.cpu()
        self._pin = self.device.type == "cuda"
        self.labels = labels.to(self.device, torch.int64)
        self.batch_size = int(batch_size)
        self.mean, self.std = tuple(mean), tuple(std)
        # made once, on the device: building them from the tuples per batch was a host-to-device copy (a
        # synchronisation on CUDA) in every step
        self.mean_t, self.std_t = channel_stats(self.mean, self.device), channel_stats(self.std, self.device)
        self.train, self.seed, self.pad = bool(train), int(seed), int(pad)

    @property
    def num_samples(self) -> int:
        """Number of images in the split."""
        return int(self.images.shape[0])

    def __len__(self) -> int:
        """Number of batches per epoch (the last one may be smaller)."""
        return -(-self.num_samples // self.batch_size)

    def _plan(self, epoch: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(order, shifts, flips) for one epoch, drawn on the CPU so every device sees the same numbers."""
        n = self.num_samples
        if not self.train:
            return torch.arange(n), torch.zeros(n, 2, dtype=torch.int64), torch.zeros(n, dtype=torch.bool)
        g = torch.Generator().manual_seed(epoch_seed(self.seed, epoch))
        order = torch.randperm(n, generator=g)
        shifts = torch.randint(-self.pad, self.pad + 1, (n, 2), generator=g)
        flips = torch.rand(n, generator=g) < 0.5
        return order, shifts, flips

    def epoch(self, epoch: int) -> Iterator[Batch]:
        """The batches of epoch `epoch`: shuffled and augmented when training, else in order and plain."""
        plan = EpochPlan(*self._plan(epoch), batch_size=self.batch_size)
        order, shifts, flips = (t.to(self.device) for t in (plan.order, plan.shifts, plan.flips))
        for start in range(0, self.num_samples, self.batch_size):
            idx = order[start : start + self.batch_size]
            sh, fl = shifts[start : start + self.batch_size], flips[start : start + self.batch_size]
            x = (
                self.images[idx]
                if self.on_device
                else self._from_host(plan.order[start : start + self.batch_size])
            )
            if self.train:
                x = augment(x, sh, fl, self.pad)
            yield Batch(
                images=normalize(x, self.mean_t, self.std_t),
                labels=self.labels[idx],
                index=idx,
                shifts=sh,
                flips=fl,
                epoch=epoch if self.train else 0,
                plan=plan,
                start=start,
            )

    def _from_host(self, index: torch.Tensor) -> torch.Tensor:
        """The rows `index` (a host tensor: the epoch's draws) of the host-held images, gathered on the host
        into their own pinned block (CUDA) and copied to the device without blocking: no synchronisation."""
        out = torch.empty(len(index), *self.images.shape[1:], dtype=torch.uint8, pin_memory=self._pin)
        torch.index_select(self.images, 0, index, out=out)
        return out.to(self.device, non_blocking=True)


def split_loader(
    data, split: str, batch_size: int, device: torch.device, count: int | None = None
) -> DeviceLoader:
    """The ``split`` (train, val, test) of ``data`` (an ``ImageData``) read in order without augmentation,
    as evaluation reads it; its first ``count`` images only where given."""
    images, labels = getattr(data, f"{split}_images"), getattr(data, f"{split}_labels")
    if count is not None:
        images, labels = images[:count], labels[:count]
    return DeviceLoader(
        images, labels, batch_size=batch_size, mean=data.mean, std=data.std, device=device, train=False
    )
