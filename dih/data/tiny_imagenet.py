"""Tiny-ImageNet in its own layout (train/<wnid>/images/*, val/ labelled by val_annotations.txt)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from dih.data.folder import check_classes, class_dirs, decode_cached, list_samples
from dih.data.images import NORMALIZATION, ImageData
from dih.errors import UserError


def _class_order(root: Path, train_dir: Path) -> list[str]:
    """The wnids in `wnids.txt` order when that file exists, else train/'s sorted directory names."""
    found = class_dirs(train_dir)
    wnids_file = root / "wnids.txt"
    if not wnids_file.is_file():
        return found
    wnids = [line.strip() for line in wnids_file.read_text().splitlines() if line.strip()]
    if sorted(wnids) != found:
        raise UserError(
            f"{wnids_file} lists {len(wnids)} classes but {train_dir} has {len(found)} different class "
            f"directories; restore the original tiny-imagenet-200 files."
        )
    return wnids


def _val_samples(val_dir: Path, class_names: list[str]) -> list[tuple[Path, int]]:
    """(path, label) for each row of val_annotations.txt (file name, wnid, box), in file-name order."""
    index = {name: i for i, name in enumerate(class_names)}
    samples = []
    for line in (val_dir / "val_annotations.txt").read_text().splitlines():
        fields = line.split("\t")
        if len(fields) < 2:
            continue
        fname, wnid = fields[0].strip(), fields[1].strip()
        if wnid not in index:
            raise UserError(
                f"{val_dir / 'val_annotations.txt'} names an unknown class '{wnid}' for {fname}; "
                f"restore the original tiny-imagenet-200 files."
            )
        samples.append((val_dir / "images" / fname, index[wnid]))
    missing = [p for p, _ in samples if not p.is_file()]
    if missing:
        raise UserError(
            f"{len(missing)} validation images listed in val_annotations.txt are missing "
            f"(e.g. {missing[0]}); restore the original tiny-imagenet-200 files."
        )
    return sorted(samples)


def load_tiny_imagenet(root: str | Path, image_size=None) -> ImageData:
    """Load Tiny-ImageNet; its labelled `val/` split is the test set (SPEC section 1)."""
    root = Path(root)
    train_dir, val_dir = root / "train", root / "val"
    if not train_dir.is_dir() or not (val_dir / "val_annotations.txt").is_file():
        raise UserError(
            f"Tiny-ImageNet is not at {root} (expected train/<wnid>/images/ and val/val_annotations.txt); "
            f"unzip tiny-imagenet-200.zip there or set dataset.root=<the tiny-imagenet-200 directory>."
        )
    class_names = _class_order(root, train_dir)
    train = list_samples(train_dir, class_names)
    check_classes(train_dir, class_names, train)
    test = _val_samples(val_dir, class_names)
    data = decode_cached(root, "tiny_imagenet", class_names, train, test, image_size)
    mean, std = NORMALIZATION["tiny_imagenet"]
    return dataclasses.replace(data, mean=mean, std=std)
