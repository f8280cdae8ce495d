"""Image-folder data sets (`root/train/<class>/*`, `root/test/<class>/*`), decoded once and cached beside
them (image_cache.py), after checking that the decoded images fit in host memory.

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

from dih.data.image_cache import read_cache, write_cache
from dih.data.images import ImageData, channel_stats
from dih.device import decoded_fits, gib, host_available_bytes
from dih.errors import UserError

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm"})
_CACHE_VERSION = 2  # 2: a directory of memory-mapped .npy arrays instead of one .npz
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


def check_classes(train_dir: Path, class_names: list[str], train: list[Sample]) -> None:
    """Refuse training classes a classifier cannot learn from: a class directory with no images (the
    model would have an output no image ever trains), or a single class (nothing to tell apart)."""
    found = {label for _, label in train}
    empty = [name for label, name in enumerate(class_names) if label not in found]
    if empty:
        raise UserError(
            f"{train_dir / empty[0]} holds no training images"
            + (f" (nor do {len(empty) - 1} other class directories)" if len(empty) > 1 else "")
            + "; put the class's images there or remove the directory."
        )
    if len(class_names) == 1:
        raise UserError(
            f"{train_dir} has one class ({class_names[0]}) and a classifier needs at least two; put each "
            "class's images in its own train/<class>/ directory."
        )


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


def _decode_all(
    paths: list[Path], size_hw: tuple[int, int] | None, root: Path, split: str, first: np.ndarray
) -> np.ndarray:
    """Decode `paths` into one NCHW uint8 array with a thread pool; all images must be the size of `first`,
    the first training image (reused as it is for the training split)."""
    if not paths:
        raise UserError(f"No {split} images found under {root}; check dataset.root and the folder layout.")
    h, w = first.shape[:2]
    out = np.empty((len(paths), 3, h, w), dtype=np.uint8)

    def work(start: int) -> None:
        for i in range(start, min(start + _CHUNK, len(paths))):
            arr = first if i == 0 and split == "training" else _decode_one(paths[i], size_hw)
            if arr.shape[:2] != (h, w):
                raise UserError(
                    f"The images under {root} differ in size (the first training image is {w}x{h}, "
                    f"{paths[i].name} is {arr.shape[1]}x{arr.shape[0]}); set dataset.image_size=<pixels> "
                    f"to resize them all."
                )
            out[i] = arr.transpose(2, 0, 1)

    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        for fut in [pool.submit(work, s) for s in range(0, len(paths), _CHUNK)]:
            fut.result()
    return out


def check_host_memory(root: Path, num_images: int, image_hw: tuple[int, int]) -> None:
    """Refuse, before anything is decoded or read, a data set whose uint8 images do not fit in host
    memory (memory.decoded_fits): a job that runs out is killed without a word, and without failed.json."""
    nbytes = num_images * 3 * image_hw[0] * image_hw[1]
    free = host_available_bytes()
    if not decoded_fits(nbytes, free):
        raise UserError(
            f"The {num_images} images under {root} take {gib(nbytes)} decoded at {image_hw[1]}x{image_hw[0]} "
            f"but only {gib(free or 0)} of host memory is free; set a smaller dataset.image_size=, run on a "
            f"job with more memory (e.g. hydra.launcher.mem_gb=), or use fewer images."
        )


def decode_cached(
    root: Path, name: str, class_names: list[str], train: list[Sample], test: list[Sample], image_size=None
) -> ImageData:
    """Decode train/test samples once, cache them in `root/.dih_cache_<hash>/`, reuse the cache later.

    The decoded size is checked against free host memory first (check_host_memory), also for a cached
    set, whose split is gathered into memory. The returned mean/std are computed from the training images
    (also cached); val is empty. Images come back memory-mapped from the cache where it could be written.
    """
    path = root / f".dih_cache_{_cache_key(root, train, test, class_names, image_size)}"
    arrays = read_cache(path)
    if arrays is not None:
        check_host_memory(root, len(train) + len(test), arrays["train_images"].shape[2:])
    else:
        arrays = _decode(root, path, train, test, _size_hw(image_size))
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


def _decode(
    root: Path, path: Path, train: list[Sample], test: list[Sample], size_hw: tuple[int, int] | None
) -> dict[str, np.ndarray]:
    """Check the memory, decode every image, write the cache at `path` and return it memory-mapped (the
    decoded arrays themselves where it cannot be written)."""
    if not train:
        raise UserError(f"No training images found under {root}; check dataset.root and the folder layout.")
    # the configured size, else the first image's: decoding one image to learn it is cheap
    first = None if size_hw else _decode_one(train[0][0], size_hw)
    check_host_memory(root, len(train) + len(test), size_hw or first.shape[:2])
    if first is None:
        first = _decode_one(train[0][0], size_hw)
    train_x = _decode_all([p for p, _ in train], size_hw, root, "training", first)
    test_x = _decode_all([p for p, _ in test], size_hw, root, "test", first)
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
        write_cache(path, arrays)
    except OSError as err:
        warnings.warn(
            f"could not write the image cache {path} ({err}); images will be decoded again next time",
            stacklevel=3,
        )
        return arrays
    # the mapped cache instead of the decoded copy: file pages the kernel can drop, not process memory
    return read_cache(path) or arrays


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
    check_classes(train_dir, class_names, train)
    test = list_samples(test_dir, class_names)
    return decode_cached(root, "folder", class_names, train, test, image_size)
