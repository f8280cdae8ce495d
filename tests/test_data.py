"""Data sets on small files the tests write: image folders, Tiny-ImageNet, CIFAR pickles, the split."""

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image

from dih.data import DATASETS, NORMALIZATION, dataset_identity, load_data, stratified_split
from dih.data import cifar as cifar_mod
from dih.data import folder as folder_mod
from dih.errors import UserError

CONF = Path(__file__).resolve().parents[1] / "conf" / "dataset"


def cfg(name: str, **overrides):
    """The shipped conf/dataset/<name>.yaml with overrides, as Hydra would compose it."""
    return OmegaConf.merge(OmegaConf.load(CONF / f"{name}.yaml"), overrides)


def _png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def _random_image(rng, h, w):
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


# ----- image folders -----


@pytest.fixture
def folder_tree(tmp_path):
    """train/{dog,cat,bird}: 6, 4, 2 PNGs of 6x8; test/{dog,cat}: 2 each (bird has no test images)."""
    rng = np.random.default_rng(0)
    written = {"train": {}, "test": {}}
    for split, counts in (("train", {"dog": 6, "cat": 4, "bird": 2}), ("test", {"dog": 2, "cat": 2})):
        for cls, n in counts.items():
            for i in range(n):
                arr = _random_image(rng, 6, 8)
                _png(tmp_path / split / cls / f"{i:02d}.png", arr)
                written[split][(cls, i)] = arr
    (tmp_path / "train" / "dog" / "notes.txt").write_text("not an image")
    return tmp_path, written


def test_folder_labels_shapes_pixels_and_stats(folder_tree):
    root, written = folder_tree
    data = load_data(cfg("folder", root=str(root), val_fraction=0))
    assert data.class_names == ["bird", "cat", "dog"] and data.num_classes == 3
    assert data.train_images.dtype == torch.uint8 and data.image_shape == (3, 6, 8)
    assert data.train_images.shape == (12, 3, 6, 8) and data.test_images.shape == (4, 3, 6, 8)
    assert data.train_labels.tolist() == [0] * 2 + [1] * 4 + [2] * 6
    assert data.test_labels.tolist() == [1, 1, 2, 2]
    assert data.val_images.shape == (0, 3, 6, 8) and data.val_labels.numel() == 0
    # sorted file order within each class; PNG is lossless so the pixels are exactly what was written
    assert np.array_equal(data.train_images[2].permute(1, 2, 0).numpy(), written["train"][("cat", 0)])
    assert np.array_equal(data.test_images[3].permute(1, 2, 0).numpy(), written["test"][("dog", 1)])
    train = np.stack([written["train"][k] for k in sorted(written["train"])]).astype(np.float64) / 255
    assert np.allclose(data.mean, train.mean(axis=(0, 1, 2)), atol=1e-9)
    assert np.allclose(data.std, train.std(axis=(0, 1, 2)), atol=1e-9)


def test_folder_cache_written_reused_and_invalidated(folder_tree, monkeypatch):
    root, _ = folder_tree
    first = load_data(cfg("folder", root=str(root)))
    caches = list(root.glob(".dih_cache_*[0-9a-f]"))
    assert len(caches) == 1 and not list(root.glob("*.tmp"))

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded again despite a valid cache")

    monkeypatch.setattr(folder_mod, "_decode_one", no_decoding)
    second = load_data(cfg("folder", root=str(root)))
    assert torch.equal(first.train_images, second.train_images) and first.mean == second.mean
    monkeypatch.undo()
    # a changed file (new size and mtime) must not be served from the old cache
    _png(root / "train" / "cat" / "00.png", np.zeros((6, 8, 3), dtype=np.uint8))
    os.utime(root / "train" / "cat" / "00.png", ns=(1, 1))
    third = load_data(cfg("folder", root=str(root), val_fraction=0))
    assert int(third.train_images[2].sum()) == 0
    assert len(list(root.glob(".dih_cache_*[0-9a-f]"))) == 2


def test_folder_mixed_sizes_need_image_size(tmp_path):
    rng = np.random.default_rng(1)
    _png(tmp_path / "train" / "a" / "0.png", _random_image(rng, 6, 6))
    _png(tmp_path / "train" / "b" / "0.png", _random_image(rng, 9, 5))
    _png(tmp_path / "test" / "a" / "0.png", _random_image(rng, 6, 6))
    with pytest.raises(UserError, match=r"dataset\.image_size="):
        load_data(cfg("folder", root=str(tmp_path), val_fraction=0))
    data = load_data(cfg("folder", root=str(tmp_path), val_fraction=0, image_size=4))
    assert data.train_images.shape == (2, 3, 4, 4) and data.test_images.shape == (1, 3, 4, 4)


def test_folder_errors_name_the_fix(tmp_path):
    with pytest.raises(UserError, match=r"dataset\.root="):
        load_data(cfg("folder"))  # the shipped default is root: null
    with pytest.raises(UserError, match=r"dataset\.root="):
        load_data(cfg("folder", root=str(tmp_path / "nowhere")))
    rng = np.random.default_rng(2)
    _png(tmp_path / "train" / "a" / "0.png", _random_image(rng, 4, 4))
    _png(tmp_path / "test" / "zebra" / "0.png", _random_image(rng, 4, 4))
    with pytest.raises(UserError, match="zebra"):
        load_data(cfg("folder", root=str(tmp_path)))


def test_a_class_without_training_images_or_a_lone_class_is_refused(folder_tree, tmp_path):
    """A class directory with no images would be an output nothing trains; one class, nothing to tell apart:
    each refused in one sentence naming the directory."""
    root, _ = folder_tree
    (root / "train" / "emu").mkdir()
    (root / "train" / "emu" / "readme.txt").write_text("images to come")
    with pytest.raises(UserError, match=r"train/emu holds no training images; put the class's images there"):
        load_data(cfg("folder", root=str(root), val_fraction=0))
    lone = tmp_path / "lone"
    rng = np.random.default_rng(3)
    for split in ("train", "test"):
        _png(lone / split / "cat" / "0.png", _random_image(rng, 4, 4))
    with pytest.raises(UserError, match=r"lone/train has one class \(cat\) and a classifier needs"):
        load_data(cfg("folder", root=str(lone), val_fraction=0))


def test_relative_root_and_identity(folder_tree, monkeypatch):
    root, _ = folder_tree
    monkeypatch.chdir(root.parent)
    data = load_data(cfg("folder", root=root.name, val_fraction=0))
    assert data.train_images.shape[0] == 12
    ident = dataset_identity(cfg("folder", root=root.name))
    assert ident["root"] == str(root.resolve()) and ident["name"] == "folder" and ident["val_fraction"] == 0.1
    cifar_ident = dataset_identity(cfg("cifar10", root="/somewhere"))
    assert "root" not in cifar_ident and cifar_ident["verify_checksums"] is True
    assert dataset_identity(cfg("cifar10", root="/a")) == dataset_identity(cfg("cifar10", root="/b"))
    assert dataset_identity(cfg("cifar10")) != dataset_identity(cfg("cifar10", split_seed=1))


# ----- Tiny-ImageNet layout -----

COLOURS = {"n02": (250, 10, 10), "n01": (10, 250, 10), "n03": (10, 10, 250)}


def test_tiny_imagenet_layout(tmp_path):
    root = tmp_path / "tiny-imagenet-200"
    wnids = ["n02", "n01", "n03"]  # not sorted: wnids.txt fixes the class order
    root.mkdir()
    (root / "wnids.txt").write_text("\n".join(wnids) + "\n")
    for wnid in wnids:
        for i in range(3):
            _png_jpeg(root / "train" / wnid / "images" / f"{wnid}_{i}.JPEG", COLOURS[wnid])
        (root / "train" / wnid / f"{wnid}_boxes.txt").write_text("ignored\n")
    rows, order = [], ["n03", "n01", "n02", "n03"]
    for i, wnid in enumerate(order):
        _png_jpeg(root / "val" / "images" / f"val_{i}.JPEG", COLOURS[wnid])
        rows.append(f"val_{i}.JPEG\t{wnid}\t0\t0\t7\t7")
    (root / "val" / "val_annotations.txt").write_text("\n".join(rows) + "\n")

    data = load_data(cfg("tiny_imagenet", root=str(root), val_fraction=0))
    assert data.name == "tiny_imagenet" and data.class_names == wnids
    assert data.train_images.shape == (9, 3, 8, 8) and data.test_images.shape == (4, 3, 8, 8)
    assert data.train_labels.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert data.test_labels.tolist() == [wnids.index(w) for w in order]
    for img, label in zip(data.test_images, data.test_labels, strict=True):
        colour = torch.tensor(COLOURS[wnids[label]], dtype=torch.float32)
        assert torch.allclose(img.float().mean(dim=(1, 2)), colour, atol=12)  # JPEG is lossy
    assert (data.mean, data.std) == NORMALIZATION["tiny_imagenet"]
    assert list(root.glob(".dih_cache_*[0-9a-f]"))
    resized = load_data(cfg("tiny_imagenet", root=str(root), image_size=4, val_fraction=0.4))  # 1 of 3
    assert resized.image_shape == (3, 4, 4)
    assert resized.train_images.shape[0] + resized.val_images.shape[0] == 9


def _png_jpeg(path: Path, colour) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), colour).save(path, format="JPEG")


def test_tiny_imagenet_class_without_training_images_is_refused(tmp_path):
    root = tmp_path / "tiny-imagenet-200"
    for wnid in ("n01", "n02"):
        (root / "train" / wnid / "images").mkdir(parents=True)
    _png_jpeg(root / "train" / "n01" / "images" / "n01_0.JPEG", COLOURS["n01"])
    _png_jpeg(root / "val" / "images" / "val_0.JPEG", COLOURS["n01"])
    (root / "val" / "val_annotations.txt").write_text("val_0.JPEG\tn01\t0\t0\t7\t7\n")
    with pytest.raises(UserError, match=r"train/n02 holds no training images"):
        load_data(cfg("tiny_imagenet", root=str(root), val_fraction=0))


def test_tiny_imagenet_missing_names_root(tmp_path):
    with pytest.raises(UserError, match=r"dataset\.root="):
        load_data(cfg("tiny_imagenet", root=str(tmp_path)))


# ----- CIFAR through torchvision -----


def _dump(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)


def _rows(rng, n):
    return rng.integers(0, 256, (n, 3072), dtype=np.uint8)


def _every_class(rng, n: int, classes: int) -> list[int]:
    """n labels in random order that hold every class, as CIFAR's training files do."""
    return rng.permutation(np.arange(n) % classes).tolist()


def write_cifar10(root: Path, per_batch=4, n_test=5):
    rng = np.random.default_rng(10)
    folder = root / "cifar-10-batches-py"
    train_rows, train_labels = [], []
    every = _every_class(rng, 5 * per_batch, 10)
    for b in range(1, 6):
        rows, labels = _rows(rng, per_batch), every[(b - 1) * per_batch : b * per_batch]
        _dump(folder / f"data_batch_{b}", {"data": rows, "labels": labels, "batch_label": f"b{b}"})
        train_rows.append(rows)
        train_labels += labels
    test_rows, test_labels = _rows(rng, n_test), rng.integers(0, 10, n_test).tolist()
    _dump(folder / "test_batch", {"data": test_rows, "labels": test_labels})
    _dump(folder / "batches.meta", {"label_names": [f"c10_{i}" for i in range(10)]})
    return np.concatenate(train_rows), train_labels, test_rows, test_labels


def write_cifar100(root: Path, n_train=200, n_test=6):
    rng = np.random.default_rng(100)
    folder = root / "cifar-100-python"
    train_rows, train_labels = _rows(rng, n_train), _every_class(rng, n_train, 100)
    test_rows, test_labels = _rows(rng, n_test), rng.integers(0, 100, n_test).tolist()
    _dump(folder / "train", {"data": train_rows, "fine_labels": train_labels, "coarse_labels": [0] * n_train})
    _dump(folder / "test", {"data": test_rows, "fine_labels": test_labels, "coarse_labels": [0] * n_test})
    _dump(
        folder / "meta", {"fine_label_names": [f"f{i}" for i in range(100)], "coarse_label_names": ["x"] * 20}
    )
    return train_rows, train_labels, test_rows, test_labels


def test_cifar10_through_torchvision(tmp_path):
    train_rows, train_labels, test_rows, test_labels = write_cifar10(tmp_path)
    data = load_data(cfg("cifar10", root=str(tmp_path), verify_checksums=False, val_fraction=0))
    assert data.num_classes == 10 and data.class_names[3] == "c10_3"
    assert data.train_images.shape == (20, 3, 32, 32) and data.train_images.dtype == torch.uint8
    assert data.train_labels.tolist() == train_labels and data.test_labels.tolist() == test_labels
    # CIFAR rows are channel-major 3x32x32: the NCHW tensor is exactly the reshaped rows
    assert np.array_equal(data.train_images.numpy(), train_rows.reshape(-1, 3, 32, 32))
    assert np.array_equal(data.test_images.numpy(), test_rows.reshape(-1, 3, 32, 32))
    assert (data.mean, data.std) == NORMALIZATION["cifar10"]


def test_cifar100_through_torchvision_with_split(tmp_path):
    train_rows, train_labels, _, test_labels = write_cifar100(tmp_path)
    data = load_data(cfg("cifar100", root=str(tmp_path), verify_checksums=False, val_fraction=0.5))
    assert data.num_classes == 100 and data.class_names[:2] == ["f0", "f1"]
    assert data.test_labels.tolist() == test_labels
    assert data.train_images.shape[0] + data.val_images.shape[0] == 200
    train_idx, val_idx = stratified_split(torch.tensor(train_labels), 0.5, 0)
    assert np.array_equal(data.val_images.numpy(), train_rows.reshape(-1, 3, 32, 32)[val_idx.numpy()])
    assert data.val_labels.tolist() == [train_labels[i] for i in val_idx]
    assert (data.mean, data.std) == NORMALIZATION["cifar100"]


def _offline() -> bool:
    return cifar_mod._reachable(cifar_mod.dataset_class("cifar100").url, timeout=2.0) is not None


def test_cifar_missing_offline_names_path_and_root(tmp_path):
    if not _offline():
        pytest.skip("the CIFAR host is reachable: this check is about running offline")
    with pytest.raises(UserError) as err:
        load_data(cfg("cifar100", root=str(tmp_path / "data")))
    message = str(err.value)
    assert str(tmp_path / "data" / "cifar-100-python") in message and "dataset.root=" in message


def test_cifar_checksum_failure_suggests_the_switch(tmp_path):
    if not _offline():
        pytest.skip("the CIFAR host is reachable: this check is about running offline")
    write_cifar10(tmp_path)
    with pytest.raises(UserError, match=r"dataset\.verify_checksums=false"):
        load_data(cfg("cifar10", root=str(tmp_path)))  # checksums on: test-written files do not match


# ----- the split, names, synthetic -----


def test_stratified_split_exact_disjoint_fixed():
    counts = {0: 50, 1: 30, 2: 7, 3: 1}
    labels = torch.tensor([c for c, n in counts.items() for _ in range(n)])[torch.randperm(88)]
    train_idx, val_idx = stratified_split(labels, 0.1, seed=0)
    assert [int((labels[val_idx] == c).sum()) for c in counts] == [5, 3, 1, 0]
    assert set(train_idx.tolist()).isdisjoint(val_idx.tolist())
    assert sorted(train_idx.tolist() + val_idx.tolist()) == list(range(88))
    assert torch.equal(val_idx, val_idx.sort().values) and torch.equal(train_idx, train_idx.sort().values)
    assert train_idx.dtype == val_idx.dtype == torch.int64
    again = stratified_split(labels.clone(), 0.1, seed=0)
    assert torch.equal(again[1], val_idx) and torch.equal(again[0], train_idx)
    assert not torch.equal(stratified_split(labels, 0.1, seed=1)[1], val_idx)
    train_all, val_none = stratified_split(labels, 0.0, seed=0)
    assert val_none.numel() == 0 and torch.equal(train_all, torch.arange(88))


def test_unknown_dataset_and_bad_fraction():
    with pytest.raises(UserError, match="imagenet_1k.*cifar10"):
        load_data({"name": "imagenet_1k", "root": None, "val_fraction": 0.1, "split_seed": 0})
    with pytest.raises(UserError, match="val_fraction"):
        load_data(cfg("synthetic", val_fraction=1.0))
    assert DATASETS == ("cifar10", "cifar100", "tiny_imagenet", "folder", "synthetic")


def test_a_split_without_validation_or_training_images_is_refused():
    """train_size=5 of 10 classes gave 5 classes no image and no validation image at all; a val_fraction
    that rounds to nothing in every class trained without validation; one that takes a class's every image
    left it untrained: each refused naming the setting to change."""
    with pytest.raises(
        UserError,
        match=r"^5 of the 10 classes \(class\d, .*\) have no training image; raise "
        r"dataset\.train_size\.$",
    ):
        load_data(cfg("synthetic", train_size=5))
    with pytest.raises(
        UserError,
        match=r"^dataset\.val_fraction=0\.1 holds out no validation image \(the "
        r"largest class has 1 training images and round\(0\.1 x 1\) is 0\); raise dataset\.train_size, "
        r"raise dataset\.val_fraction, or set it to 0",
    ):
        load_data(cfg("synthetic", train_size=10))
    with pytest.raises(
        UserError, match=r"val_fraction=0\.9 holds out every training image of 10 class\(es\)"
    ):
        load_data(cfg("synthetic", train_size=10, val_fraction=0.9))
    with pytest.raises(UserError, match=r"val_fraction=0\.1 holds out no validation image"):
        load_data(cfg("synthetic", train_size=10, train_per_class=1))
    # the smallest that works: one validation image in each class, one left to train, and no split at all
    data = load_data(cfg("synthetic", train_size=60, num_classes=10, val_fraction=0.1))
    assert len(data.val_labels) == 10 and data.train_labels.bincount().tolist() == [5] * 10
    assert len(load_data(cfg("synthetic", train_size=10, val_fraction=0)).train_labels) == 10


def test_synthetic_deterministic_balanced_and_split():
    a = load_data(cfg("synthetic"))
    b = load_data(cfg("synthetic"))
    c = load_data(cfg("synthetic", seed=1))
    assert torch.equal(a.train_images, b.train_images) and torch.equal(a.test_images, b.test_images)
    assert not torch.equal(a.train_images, c.train_images)
    assert a.train_images.shape == (540, 3, 32, 32) and a.val_images.shape == (60, 3, 32, 32)
    assert a.test_images.shape == (200, 3, 32, 32) and a.train_images.dtype == torch.uint8
    assert a.val_labels.bincount().tolist() == [6] * 10 and a.test_labels.bincount().tolist() == [20] * 10
    small = load_data(
        cfg("synthetic", num_classes=4, image_size=16, train_size=40, test_size=8, val_fraction=0)
    )
    assert small.image_shape == (3, 16, 16) and small.num_classes == 4 and small.train_labels.max() == 3
    # the classes differ: each test image is nearer its own class's mean training image than most others
    means = torch.stack([a.train_images[a.train_labels == k].float().mean(0) for k in range(10)])
    dist = ((a.test_images.float()[:, None] - means[None]) ** 2).flatten(2).sum(-1)
    assert (dist.argmin(1) == a.test_labels).float().mean() > 0.5
