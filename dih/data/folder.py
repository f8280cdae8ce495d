"""Image-folder data sets (`root/train/<class>/*`, `root/test/<class>/*`), decoded once and cached as .npz.

The decode and cache functions here are shared with the Tiny-ImageNet layout (tiny_imagenet.py).
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from dih import atomic
from dih.data.images import ImageData, channel_stats
from dih.errors import UserError

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm"})
_CACHE_VERSION = 1
_CHUNK = 256  # images per decode task

Sample = tuple[Path, int]


def _image_files(directory: Path) -> list[Path]:
    """Image files anywhere under `directory`, sorted, hidden files skipped."""
    return sorted(
        p
        for p in directory.rglob("*")
        if p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".") and p.is_file()
    )


def class_dirs(split_dir: Path) -> list[str]:
    """Sorted names of the (non-hidden) sub-directories of `split_dir`: the class names."""
    return sorted(p.name for p in split_dir.iterdir() if p.is_dir() and not p.name.startswith("."))


def list_samples(split_dir: Path, class_names: list[str]) -> list[Sample]:
    """(path, label) for every image under `split_dir/<class>/`, labels by position in `class_names`."""
    samples: list[Sample] = []
    for label, name in enumerate(class_names):
        if (split_dir / name).is_dir():
            samples += [(p, label) for p in _image_files(split_dir / name)]
    return samples


def _size_hw(image_size) -> tuple[int, int] | None:
    """`image_size` (None, an int, or [height, width]) as (height, width)."""
    if image_size is None:
        return None
    if isinstance(image_size, int):
        return image_size, image_size
    h, w = (int(v) for v in image_size)
    return h, w


def _cache_key(root: Path, train: list[Sample], test: list[Sample], class_names, image_size) -> str:
    """A hash of everything the decoded arrays depend on: file list, sizes, mtimes, labels, image_size."""
    h = hashlib.sha256()
    h.update(json.dumps([_CACHE_VERSION, _size_hw(image_size), list(class_names)]).encode())
    for tag, samples in (("train", train), ("test", test)):
        h.update(tag.encode())
        for path, label in samples:
            st = path.stat()
            h.update(f"{path.relative_to(root)}\0{st.st_size}\0{st.st_mtime_ns}\0{label}\n".encode())
    return h.hexdigest()[:20]


def _decode_one(path: Path, size_hw: tuple[int, int] | None) -> np.ndarray:
    """One image file -> HWC uint8 RGB array, resized to `size_hw` when given."""
    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
            if size_hw is not None and im.size != (size_hw[1], size_hw[0]):
                im = im.resize((size_hw[1], size_hw[0]), Image.Resampling.BILINEAR)
            return np.asarray(im, dtype=np.uint8)
    except (UnidentifiedImageError, OSError) as err:
        raise UserError(f"Cannot read the image {path} ({err}); remove or replace it.") from None


def _decode_all(paths: list[Path], size_hw: tuple[int, int] | None, root: Path, split: str) -> np.ndarray:
    """Decode `paths` into one NCHW uint8 array with a thread pool; all images must end up one size."""
    if not paths:
        raise UserError(f"No {split} images found under {root}; check dataset.root and the folder layout.")
    first = _decode_one(paths[0], size_hw)
    h, w = first.shape[:2]
    out = np.empty((len(paths), 3, h, w), dtype=np.uint8)

    def work(start: int) -> None:
        for i in range(start, min(start + _CHUNK, len(paths))):
            arr = first if i == 0 else _decode_one(paths[i], size_hw)
            if arr.shape[:2] != (h, w):
                raise UserError(
                    f"The images under {root} differ in size ({paths[0].name} is {w}x{h}, {paths[i].name} is "
                    f"{arr.shape[1]}x{arr.shape[0]}); set dataset.image_size=<pixels> to resize them all."
                )
            out[i] = arr.transpose(2, 0, 1)

    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        for fut in [pool.submit(work, s) for s in range(0, len(paths), _CHUNK)]:
            fut.result()
    return out


def _write_cache(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write the .npz so no reader ever sees half of it."""
    atomic.write_with(path, lambda f: np.savez(f, **arrays))


def _read_cache(path: Path) -> dict[str, np.ndarray] | None:
    """The cached arrays, or None when the file is missing or unreadable (then it is rebuilt)."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (OSError, ValueError, KeyError):
        return None


def decode_cached(
    root: Path, name: str, class_names: list[str], train: list[Sample], test: list[Sample], image_size=None
) -> ImageData:
    """Decode train/test samples once, cache them as `root/.dih_cache_<hash>.npz`, reuse the cache later.

    The returned mean/std are computed from the training images (also cached); val is empty.
    """
    path = root / f".dih_cache_{_cache_key(root, train, test, class_names, image_size)}.npz"
    arrays = _read_cache(path)
    if arrays is None:
        size_hw = _size_hw(image_size)
        train_x = _decode_all([p for p, _ in train], size_hw, root, "training")
        test_x = _decode_all([p for p, _ in test], size_hw, root, "test")
        if test_x.shape[1:] != train_x.shape[1:]:
            raise UserError(
                f"The test images under {root} are {test_x.shape[3]}x{test_x.shape[2]} but the training "
                f"images are {train_x.shape[3]}x{train_x.shape[2]}; set dataset.image_size=<pixels> to "
                f"resize them all."
            )
        mean, std = channel_stats(torch.from_numpy(train_x))
        arrays = {
            "train_images": train_x,
            "train_labels": np.array([lab for _, lab in train], dtype=np.int64),
            "test_images": test_x,
            "test_labels": np.array([lab for _, lab in test], dtype=np.int64),
            "mean": np.array(mean),
            "std": np.array(std),
        }
        try:
            _write_cache(path, arrays)
        except OSError as err:
            warnings.warn(
                f"could not write the image cache {path} ({err}); images will be decoded again next time",
                stacklevel=2,
            )
    train_x = torch.from_numpy(arrays["train_images"])
    return ImageData(
        name=name,
        num_classes=len(class_names),
        mean=tuple(float(v) for v in arrays["mean"]),
        std=tuple(float(v) for v in arrays["std"]),
        train_images=train_x,
        train_labels=torch.from_numpy(arrays["train_labels"]),
        val_images=train_x[:0],
        val_labels=torch.zeros(0, dtype=torch.int64),
        test_images=torch.from_numpy(arrays["test_images"]),
        test_labels=torch.from_numpy(arrays["test_labels"]),
        class_names=list(class_names),
    )


def load_folder(root: str | Path, image_size=None) -> ImageData:
    """Load `root/train/<class>/*` and `root/test/<class>/*`; classes are train's sorted directory names."""
    root = Path(root)
    train_dir, test_dir = root / "train", root / "test"
    if not train_dir.is_dir() or not test_dir.is_dir():
        raise UserError(
            f"No image folder data set at {root} (expected {train_dir}/<class>/* and {test_dir}/<class>/*); "
            f"set dataset.root= to the directory that holds train/ and test/."
        )
    class_names = class_dirs(train_dir)
    if not class_names:
        raise UserError(
            f"{train_dir} has no class sub-directories; put each class's images in train/<class>/."
        )
    unknown = sorted(set(class_dirs(test_dir)) - set(class_names))
    if unknown:
        raise UserError(
            f"{test_dir} has classes that train/ lacks ({', '.join(unknown[:5])}); test/ must use the "
            f"class directories of train/."
        )
    train = list_samples(train_dir, class_names)
    test = list_samples(test_dir, class_names)
    return decode_cached(root, "folder", class_names, train, test, image_size)
