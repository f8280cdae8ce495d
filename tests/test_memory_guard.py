"""A data set is checked against free memory before it is decoded: on the host it must fit (else one
sentence says what to do, and a run leaves failed.json), on the device it is held whole where it fits, else
kept in host memory and moved a batch at a time, with the same batches. The validation split is carved out
without a second copy of the training images, and the decoded cache is read memory-mapped."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import run_cli
from omegaconf import OmegaConf
from PIL import Image

from dih.data import compact_rows, load_data, stratified_split
from dih.data import folder as folder_mod
from dih.data.image_cache import read_cache
from dih.data.loader import DeviceLoader, images_on_device
from dih.device import cgroup_available, decoded_fits, host_available_bytes
from dih.errors import UserError

CONF = Path(__file__).resolve().parents[1] / "conf" / "dataset"
MEAN, STD = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
HUGE = 1_000_000  # an image side no machine holds a dozen of: 3 TB per image


def write_folder(root: Path, train: int = 6, test: int = 2, size: int = 8) -> None:
    """Two classes of random PNGs under root/train and root/test."""
    rng = np.random.default_rng(0)
    for split, count in (("train", train), ("test", test)):
        for c in ("a", "b"):
            (root / split / c).mkdir(parents=True)
            for i in range(count):
                pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(root / split / c / f"{i}.png")


def folder_cfg(root: Path, **overrides):
    return OmegaConf.merge(OmegaConf.load(CONF / "folder.yaml"), {"root": str(root), **overrides})


# ----- the rule -----


def test_decoded_fits_within_the_share_of_free_memory():
    assert decoded_fits(80, 100) and not decoded_fits(81, 100)  # 0.8 of free memory, no more
    assert decoded_fits(50, 100, share=0.5) and not decoded_fits(51, 100, share=0.5)
    assert not decoded_fits(1, 0)
    assert decoded_fits(10**15, None), "free memory that cannot be read is not checked"


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_cgroup_allowance_v2_v1_and_no_limit(tmp_path):
    v2 = tmp_path / "v2"
    _write(v2 / "memory.max", "1000\n")
    _write(v2 / "memory.current", "700\n")
    _write(v2 / "memory.stat", "anon 500\ninactive_file 100\nactive_file 100\n")
    assert cgroup_available(v2) == 400  # 1000 - 700, plus the reclaimable inactive file pages
    _write(v2 / "memory.max", "max\n")
    assert cgroup_available(v2) is None
    v1 = tmp_path / "v1"
    _write(v1 / "memory" / "memory.limit_in_bytes", "2000\n")
    _write(v1 / "memory" / "memory.usage_in_bytes", "1500\n")
    assert cgroup_available(v1) == 500
    _write(v1 / "memory" / "memory.limit_in_bytes", "9223372036854771712\n")  # v1's "no limit"
    assert cgroup_available(v1) is None
    assert cgroup_available(tmp_path / "nothing") is None
    free = host_available_bytes()
    assert free is None or free > 0


# ----- the host check, before anything is decoded -----


def test_a_folder_too_big_for_host_memory_is_refused_before_decoding(tmp_path, monkeypatch):
    write_folder(tmp_path)

    def no_decoding(*args, **kwargs):
        raise AssertionError("an image was decoded before the memory check")

    monkeypatch.setattr(folder_mod, "_decode_one", no_decoding)
    with pytest.raises(UserError) as err:
        load_data(folder_cfg(tmp_path, image_size=HUGE))
    message = str(err.value)
    assert "16 images" in message and "host memory is free" in message
    assert "dataset.image_size=" in message and "hydra.launcher.mem_gb=" in message
    assert "\n" not in message
    assert not list(tmp_path.glob(".dih_cache_*")), "nothing may be written for a refused data set"


def test_the_cache_is_read_back_memory_mapped(tmp_path):
    write_folder(tmp_path)
    first = load_data(folder_cfg(tmp_path, val_fraction=0))
    (cache,) = [p for p in tmp_path.glob(".dih_cache_*") if p.is_dir()]
    arrays = read_cache(cache)
    assert isinstance(arrays["train_images"], np.memmap) and isinstance(arrays["test_images"], np.memmap)
    assert np.array_equal(arrays["train_images"], first.train_images.numpy())
    again = load_data(folder_cfg(tmp_path, val_fraction=0))
    assert torch.equal(again.train_images, first.train_images) and again.mean == first.mean
    (cache / "std.npy").unlink()  # an incomplete cache is rebuilt, not half read
    assert read_cache(cache) is None
    rebuilt = load_data(folder_cfg(tmp_path, val_fraction=0))
    assert torch.equal(rebuilt.test_images, first.test_images)


# ----- the validation split without a second copy -----


def test_compact_rows_is_the_gather_in_place():
    g = torch.Generator().manual_seed(0)
    rows = torch.randint(0, 256, (10_000, 3, 2, 2), dtype=torch.uint8, generator=g)
    labels = torch.arange(10_000) % 7
    keep, held = stratified_split(labels, 0.3, seed=1)
    expected_keep, expected_held = rows[keep].clone(), rows[held].clone()
    held_rows = rows[held]  # taken first, as load_data does: compacting overwrites the held-out rows
    kept = compact_rows(rows, keep, chunk=512)
    assert torch.equal(kept, expected_keep) and torch.equal(held_rows, expected_held)
    assert kept.data_ptr() == rows.data_ptr(), "the training rows are a view of the original storage"


def test_folder_split_is_the_stratified_gather(tmp_path):
    write_folder(tmp_path, train=10)
    full = load_data(folder_cfg(tmp_path, val_fraction=0))
    split = load_data(folder_cfg(tmp_path, val_fraction=0.2, split_seed=3))
    train_idx, val_idx = stratified_split(full.train_labels, 0.2, 3)
    assert torch.equal(split.train_images, full.train_images[train_idx])
    assert torch.equal(split.val_images, full.train_images[val_idx])
    assert torch.equal(split.train_labels, full.train_labels[train_idx])
    assert torch.equal(split.val_labels, full.train_labels[val_idx])


# ----- the device: whole where it fits, else a batch at a time from the host -----


def test_images_on_device_follows_the_share():
    cpu = torch.device("cpu")
    assert not images_on_device(1, cpu, share=0.0)
    if host_available_bytes():
        assert images_on_device(1024, cpu, share=0.5)
        assert not images_on_device(10**18, cpu, share=1.0)


def test_images_already_on_the_device_stay_there():
    # "meta" stands in for an accelerator here: tensors with a device but no memory to move back
    images = torch.zeros(4, 3, 2, 2, dtype=torch.uint8, device="meta")
    kw = dict(batch_size=2, mean=MEAN, std=STD, train=False, device_share=0.0)
    loader = DeviceLoader(images, torch.arange(4, device="meta"), device="meta", **kw)
    assert loader.on_device and loader.images.device.type == "meta"


@pytest.mark.parametrize("train", [True, False])
def test_host_held_images_give_the_same_batches(train):
    g = torch.Generator().manual_seed(4)
    images = torch.randint(0, 256, (37, 3, 6, 6), dtype=torch.uint8, generator=g)
    labels = torch.arange(37) % 5
    kw = dict(batch_size=8, mean=MEAN, std=STD, device="cpu", train=train, seed=9)
    whole = DeviceLoader(images, labels, device_share=1.0, **kw)
    on_host = DeviceLoader(images, labels, device_share=0.0, **kw)
    assert whole.on_device and not on_host.on_device
    for a, b in zip(whole.epoch(2), on_host.epoch(2), strict=True):
        assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
        assert torch.equal(a.index, b.index) and torch.equal(a.shifts, b.shifts)


# ----- through run.py: exit 2, one line, failed.json -----


@pytest.mark.slow
def test_run_refuses_a_folder_too_big_for_memory_and_leaves_failed_json(tmp_path):
    data = tmp_path / "data"
    write_folder(data)
    proc = run_cli(
        tmp_path,
        "dataset=folder",
        f"dataset.root={data}",
        f"dataset.image_size={HUGE}",
        "teacher=res8",
        "stage=teacher",
        "trainer.epochs=1",
        "trainer.milestones=[1]",
        check=False,
        tiny=False,
    )
    assert proc.returncode == 2, proc.stdout[-3000:]
    errors = [x for x in proc.stdout.splitlines() if x.startswith("error:")]
    assert len(errors) == 1 and "host memory is free" in errors[0], proc.stdout[-3000:]
    assert "Traceback" not in proc.stdout
    failed = json.loads((tmp_path / "run" / "failed.json").read_text())
    assert "hydra.launcher.mem_gb=" in failed["error"] and "dataset.image_size=" in failed["error"]
