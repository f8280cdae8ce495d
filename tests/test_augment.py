"""The on-device augmentation and loader: offsets, flips, zero padding, torchvision equality, seeding."""

import math

import pytest
import torch
from torchvision.transforms import functional as TF

from dih.data import NORMALIZATION
from dih.data import loader as loader_module
from dih.data.loader import Batch, DeviceLoader, augment, normalize

PAD = 4


def _loader(n=1000, train=True, seed=0, batch_size=64, shape=(3, 4, 4)):
    images = torch.randint(0, 256, (n, *shape), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    labels = torch.arange(n) % 7
    return DeviceLoader(
        images,
        labels,
        batch_size=batch_size,
        mean=(0.5, 0.4, 0.3),
        std=(0.2, 0.25, 0.3),
        device="cpu",
        train=train,
        seed=seed,
        pad=PAD,
    )


def _collect(loader: DeviceLoader, epoch: int) -> list[Batch]:
    return list(loader.epoch(epoch))


def test_offsets_cover_every_value_on_both_axes():
    batches = _collect(_loader(n=2000), 0)
    shifts = torch.cat([b.shifts for b in batches])
    assert shifts.dtype == torch.int64 and shifts.shape == (2000, 2)
    for axis in (0, 1):
        assert sorted(shifts[:, axis].unique().tolist()) == list(range(-PAD, PAD + 1))


def test_about_half_flipped():
    n = 4000
    flips = torch.cat([b.flips for b in _collect(_loader(n=n), 3)])
    assert flips.dtype == torch.bool
    # binomial(n, 0.5): 4 standard deviations either side of n/2
    assert abs(int(flips.sum()) - n / 2) < 4 * math.sqrt(n / 4)


@pytest.mark.parametrize("dy", range(-PAD, PAD + 1))
def test_padding_is_zeros(dy):
    h, w = 9, 7
    image = torch.full((1, 3, h, w), 255, dtype=torch.uint8)
    for dx in range(-PAD, PAD + 1):
        out = augment(image, torch.tensor([[dy, dx]]), torch.tensor([False]), PAD)[0]
        rows = torch.arange(h).view(h, 1) + dy
        cols = torch.arange(w).view(1, w) + dx
        inside = (rows >= 0) & (rows < h) & (cols >= 0) & (cols < w)
        expected = torch.where(inside, 255, 0).to(torch.uint8).expand(3, h, w)
        assert torch.equal(out, expected), (dy, dx)
        assert int((out == 0).all(dim=(0, 2)).sum()) == abs(dy)  # fully zero rows
        assert int((out == 0).all(dim=(0, 1)).sum()) == abs(dx)  # fully zero columns


def test_pixels_equal_torchvision_pad_crop_hflip():
    h, w = 12, 10  # not square, so swapped axes would show
    gen = torch.Generator().manual_seed(5)
    image = torch.randint(0, 256, (3, h, w), dtype=torch.uint8, generator=gen)
    combos = [
        (dy, dx, f) for dy in range(-PAD, PAD + 1) for dx in range(-PAD, PAD + 1) for f in (False, True)
    ]
    shifts = torch.tensor([[dy, dx] for dy, dx, _ in combos])
    flips = torch.tensor([f for _, _, f in combos])
    ours = augment(image.expand(len(combos), 3, h, w).contiguous(), shifts, flips, PAD)
    padded = TF.pad(image, [PAD])
    for i, (dy, dx, f) in enumerate(combos):
        ref = TF.crop(padded, PAD + dy, PAD + dx, h, w)
        ref = TF.hflip(ref) if f else ref
        assert torch.equal(ours[i], ref), (dy, dx, f)
    assert not torch.equal(ours[0], ours[1])  # a flip changes this image


def test_normalisation_constants_are_specs():
    assert NORMALIZATION["cifar10"] == ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))
    assert NORMALIZATION["cifar100"] == ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762))
    assert NORMALIZATION["tiny_imagenet"] == ((0.4802, 0.4481, 0.3975), (0.2770, 0.2691, 0.2821))


def test_normalize_matches_formula():
    mean, std = NORMALIZATION["cifar100"]
    x = torch.randint(0, 256, (2, 3, 5, 5), dtype=torch.uint8)
    out = normalize(x, mean, std)
    assert out.dtype == torch.float32
    for c in range(3):
        expected = (x[:, c].double() / 255 - mean[c]) / std[c]
        assert torch.allclose(out[:, c].double(), expected, atol=1e-5)


def test_batches_are_augmented_and_normalised_images_of_their_index():
    loader = _loader(n=100, batch_size=32)
    for b in loader.epoch(2):
        raw = augment(loader.images[b.index], b.shifts, b.flips, PAD)
        assert torch.equal(b.images, normalize(raw, loader.mean, loader.std))
        assert torch.equal(b.labels, loader.labels[b.index])


def test_prepared_constants_give_the_same_batches_bit_for_bit():
    """The loader builds its mean/std tensors once (no per-batch copy from Python); its batches are, bit for
    bit, the float32 formula with the constants made from the tuples as each batch did before, so the
    loader's VERSION (in every key) stays."""
    assert loader_module.VERSION == 1
    for train in (True, False):
        loader = _loader(n=100, batch_size=32, train=train)
        assert loader.mean_t.shape == (1, 3, 1, 1) and loader.mean_t.device == loader.device
        for b in loader.epoch(3):
            raw = loader.images[b.index]
            if train:
                raw = augment(raw, b.shifts, b.flips, PAD)
            mean = torch.tensor(loader.mean, dtype=torch.float32).view(1, -1, 1, 1)
            std = torch.tensor(loader.std, dtype=torch.float32).view(1, -1, 1, 1)
            before = (raw.to(torch.float32).div_(255.0).sub_(mean)).div_(std)
            assert torch.equal(b.images, before)
            assert torch.equal(normalize(raw, loader.mean_t, loader.std_t), before)
            assert torch.equal(normalize(raw, list(loader.mean), list(loader.std)), before)


def test_same_seed_and_epoch_identical_other_epoch_or_seed_different():
    a, b = _collect(_loader(seed=3), 7), _collect(_loader(seed=3), 7)
    assert all(
        torch.equal(x.images, y.images) and torch.equal(x.index, y.index) for x, y in zip(a, b, strict=True)
    )
    # replaying epoch 7 alone after other epochs gives the same batches (exact resume)
    loader = _loader(seed=3)
    _collect(loader, 0)
    again = _collect(loader, 7)
    assert all(
        torch.equal(x.shifts, y.shifts) and torch.equal(x.flips, y.flips)
        for x, y in zip(a, again, strict=True)
    )
    other_epoch = _collect(_loader(seed=3), 8)
    other_seed = _collect(_loader(seed=4), 7)
    assert not torch.equal(a[0].index, other_epoch[0].index)
    assert not torch.equal(a[0].index, other_seed[0].index)


def test_every_index_once_per_epoch_and_batch_count():
    loader = _loader(n=1000, batch_size=64)
    assert len(loader) == 16 and loader.num_samples == 1000
    batches = _collect(loader, 1)
    assert len(batches) == 16 and batches[-1].index.numel() == 1000 - 15 * 64
    assert torch.equal(torch.cat([b.index for b in batches]).sort().values, torch.arange(1000))
    assert not torch.equal(torch.cat([b.index for b in batches]), torch.arange(1000))  # shuffled
    assert {b.epoch for b in batches} == {1} and {b.epoch for b in _collect(loader, 7)} == {
        7
    }  # TOFD reads it


def test_eval_is_sequential_and_plain():
    loader = _loader(n=100, train=False, batch_size=30)
    batches = _collect(loader, 5)
    assert torch.equal(torch.cat([b.index for b in batches]), torch.arange(100))
    assert all(not b.flips.any() and not b.shifts.any() and b.epoch == 0 for b in batches)
    assert torch.equal(batches[0].images, normalize(loader.images[:30], loader.mean, loader.std))
