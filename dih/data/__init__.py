"""Data sets as in-memory uint8 tensors, the fixed validation split, and the on-device augmenting loader.

Importing the package loads no torch (its submodules import it where they load or split data): the config
check asks it for the data sets' fixed class sizes (``check_train_per_class``) before torch is needed."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dih.data.images import NORMALIZATION, ImageData
from dih.data.split import check_split, stratified_split, subset_split, too_many_per_class
from dih.errors import UserError, unknown_name

if TYPE_CHECKING:
    import torch

DATASETS = ("cifar10", "cifar100", "tiny_imagenet", "folder", "synthetic")
_ROOT_IN_IDENTITY = ("folder", "tiny_imagenet")  # where the files live is part of what the data is

__all__ = [
    "DATASETS",
    "NORMALIZATION",
    "ImageData",
    "dataset_identity",
    "load_data",
    "compact_rows",
    "stratified_split",
    "train_split_size",
]
# Training-set sizes and class counts of the data sets with a fixed size (before the validation hold-out).
_TRAIN_SIZES = {"cifar10": 50_000, "cifar100": 50_000, "tiny_imagenet": 100_000}
_NUM_CLASSES = {"cifar10": 10, "cifar100": 100, "tiny_imagenet": 200}
# How a data set of each kind gets more images, for a split that leaves a class or the validation set empty.
_MORE_IMAGES = {
    "synthetic": "raise dataset.train_size",
    "folder": "add images to the class directories of train/ under dataset.root",
    "tiny_imagenet": "add images to the class directories of train/ under dataset.root",
}
# Settings that never change the data: a name for reports only.
_NOT_IN_IDENTITY = ("label",)
# Settings added after keys were first made: left out of the identity at their default (None), so every
# artifact made before they existed keeps its key.
_IDENTITY_WHEN_SET = ("train_per_class",)


def _fields(cfg: Any) -> dict[str, Any]:
    """A plain dict of a DictConfig, a mapping, or an object with attributes."""
    try:
        from omegaconf import DictConfig, OmegaConf

        if isinstance(cfg, DictConfig):
            return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]
    except ImportError:  # pragma: no cover - omegaconf is a dependency
        pass
    if isinstance(cfg, Mapping):
        return dict(cfg)
    return dict(vars(cfg))


def resolve_root(root: str | Path) -> Path:
    """`root` as an absolute path; relative roots resolve against the current working directory."""
    return (Path.cwd() / Path(root).expanduser()).resolve()


def _require_root(f: dict[str, Any], example: str) -> Path:
    """The resolved `root` field, or a UserError asking for dataset.root= when it is unset."""
    if f.get("root") in (None, ""):
        raise UserError(f"The {f['name']} data set needs its location; pass dataset.root={example}.")
    return resolve_root(f["root"])


def _load_full(f: dict[str, Any]) -> ImageData:
    """The whole training and test sets of the configured data set, with an empty validation split."""
    name = f["name"]
    if name in ("cifar10", "cifar100"):
        from dih.data.cifar import load_cifar

        return load_cifar(name, _require_root(f, "<dir>"), bool(f.get("verify_checksums", True)))
    if name == "tiny_imagenet":
        from dih.data.tiny_imagenet import load_tiny_imagenet

        return load_tiny_imagenet(_require_root(f, "<tiny-imagenet-200 dir>"), f.get("image_size"))
    if name == "folder":
        from dih.data.folder import load_folder

        return load_folder(_require_root(f, "<dir with train/ and test/>"), f.get("image_size"))
    from dih.data.synthetic import make_synthetic

    keys = ("num_classes", "image_size", "train_size", "test_size", "seed")
    return make_synthetic(**{k: int(f[k]) for k in keys if f.get(k) is not None})


def load_data(cfg: Any) -> ImageData:
    """Load the configured data set and hold out its fixed, class-stratified validation split."""
    f = _fields(cfg)
    name = f.get("name")
    if name not in DATASETS:
        raise unknown_name("dataset", str(name), DATASETS)
    fraction = float(f.get("val_fraction") or 0.0)
    if not 0.0 <= fraction < 1.0:
        raise UserError(
            f"dataset.val_fraction is {fraction}; set it to a value in [0, 1) (0 = no validation)."
        )
    data = _load_full(f)
    seed, per_class = int(f.get("split_seed") or 0), f.get("train_per_class")
    if per_class is not None:
        train_idx, val_idx = subset_split(data.train_labels, int(per_class), fraction, seed, data.class_names)
    else:
        train_idx, val_idx = stratified_split(data.train_labels, fraction, seed)
    check_split(data.train_labels, train_idx, val_idx, data.class_names, fraction, _MORE_IMAGES.get(name))
    if per_class is None and fraction == 0.0:
        return data
    val_images = data.train_images[val_idx]  # gathered before compact_rows overwrites the rows in place
    return dataclasses.replace(
        data,
        train_images=compact_rows(data.train_images, train_idx),
        train_labels=data.train_labels[train_idx],
        val_images=val_images,
        val_labels=data.train_labels[val_idx],
    )


def compact_rows(rows: torch.Tensor, keep: torch.Tensor, chunk: int = 4096) -> torch.Tensor:
    """``rows[keep]`` for sorted, distinct `keep`, made by moving the kept rows to the front of `rows` in
    place (overwriting it) and returning that prefix as a view.

    Gathering the training split into a new tensor held the whole set twice at the peak (the full array and
    the gathered copy); this holds it once, plus one chunk. Since keep[j] >= j, writing chunk by chunk from
    the front never overwrites a row a later chunk still reads.
    """
    for start in range(0, len(keep), chunk):
        idx = keep[start : start + chunk]
        rows[start : start + len(idx)] = rows[idx]
    return rows[: len(keep)]


def dataset_identity(cfg: Any) -> dict[str, Any]:
    """The settings that determine the data a run sees, for content hashes: all fields but `root` and
    `label`, and `train_per_class` only when set.

    For folder and tiny_imagenet the resolved absolute root is included, since it names the data itself.
    """
    f = _fields(cfg)
    for name in _NOT_IN_IDENTITY:
        f.pop(name, None)
    for name in _IDENTITY_WHEN_SET:
        if f.get(name) is None:
            f.pop(name, None)
    root = f.pop("root", None)
    if f.get("name") in _ROOT_IN_IDENTITY:
        f["root"] = None if root in (None, "") else str(resolve_root(root))
    return f


def check_train_per_class(cfg: Any) -> None:
    """Refuse, before anything loads, a train_per_class more than a data set of known class sizes (CIFAR,
    Tiny-ImageNet: equal classes) can give beside its validation split; others are checked when they load."""
    f = _fields(cfg)
    per_class, name = f.get("train_per_class"), f.get("name")
    if per_class is None or name not in _TRAIN_SIZES:
        return
    size = _TRAIN_SIZES[name] // _NUM_CLASSES[name]
    fraction = float(f.get("val_fraction") or 0.0)
    held = round(fraction * size)  # as subset_split holds out of each class
    if int(per_class) > size - held:
        raise too_many_per_class(int(per_class), f"each class of {name}", size, held, fraction)


def train_split_size(cfg: Any) -> int | None:
    """About how many images the training split holds, without loading the data (for a plan's cost);
    None for an image folder that is not there."""
    f = _fields(cfg)
    name, per_class = f.get("name"), f.get("train_per_class")
    if name == "synthetic":
        total, classes = int(f.get("train_size") or 600), int(f.get("num_classes") or 10)
    elif name == "folder":
        train = Path(resolve_root(f["root"])) / "train" if f.get("root") else None
        if train is None or not train.is_dir():
            return None
        total = sum(1 for p in train.glob("*/*") if p.is_file())
        classes = sum(1 for p in train.iterdir() if p.is_dir() and not p.name.startswith("."))
    else:
        total, classes = _TRAIN_SIZES.get(name), _NUM_CLASSES.get(name)
        if total is None:
            return None
    if per_class is not None:
        return int(per_class) * classes
    return total - round(total * float(f.get("val_fraction") or 0.0))
