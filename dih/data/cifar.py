"""CIFAR-10/100 through torchvision's own data set classes, returned as uint8 NCHW tensors."""

from __future__ import annotations

import pickle
import socket
from functools import cache
from pathlib import Path
from urllib.parse import urlparse

import torch
from torchvision import datasets

from dih.data.images import NORMALIZATION, ImageData
from dih.errors import UserError

_CLASSES = {"cifar10": datasets.CIFAR10, "cifar100": datasets.CIFAR100}
_PROBE_TIMEOUT_S = 5.0


@cache
def _unverified(cls: type) -> type:
    """A subclass whose integrity checks only test that the files exist (md5 set to None throughout).

    torchvision's `check_integrity(path, None)` is an existence check, so `_check_integrity` and the
    metadata check of the real class accept re-packed or test-written files in CIFAR's own pickle format.
    """
    attrs = {
        "train_list": [[name, None] for name, _ in cls.train_list],
        "test_list": [[name, None] for name, _ in cls.test_list],
        "meta": {**cls.meta, "md5": None},
    }
    return type(f"Unverified{cls.__name__}", (cls,), attrs)


def dataset_class(name: str, verify_checksums: bool = True) -> type:
    """The torchvision class that reads `name` ('cifar10' or 'cifar100'), checksums on or off."""
    cls = _CLASSES[name]
    return cls if verify_checksums else _unverified(cls)


def _expected_files(cls: type) -> list[str]:
    """The file names torchvision reads from the data set's folder."""
    return [n for n, _ in cls.train_list + cls.test_list] + [cls.meta["filename"]]


def _reachable(url: str, timeout: float = _PROBE_TIMEOUT_S) -> str | None:
    """None when the download host accepts a connection within `timeout`, else the reason it does not."""
    parsed = urlparse(url)
    try:
        socket.create_connection((parsed.hostname, parsed.port or 443), timeout=timeout).close()
    except OSError as err:
        return f"{parsed.hostname} is unreachable ({err})"
    return None


def _download(cls: type, root: Path) -> str | None:
    """Download and extract the archive with torchvision; None on success, else why it failed."""
    reason = _reachable(cls.url)
    if reason is not None:
        return reason
    try:
        cls(str(root), train=True, download=True)
    except Exception as err:  # any network, disk or archive failure ends in the same user message
        return f"the download failed ({err})"
    return None


def _missing_message(name: str, cls: type, folder: Path, reason: str) -> str:
    files = ", ".join(_expected_files(cls))
    return (
        f"{name} is not in {folder} and could not be downloaded ({reason}); put the python-version files "
        f"({files}) in {folder}/, or pass dataset.root=<the directory that contains {cls.base_folder}/>."
    )


def load_cifar(name: str, root: str | Path, verify_checksums: bool = True) -> ImageData:
    """Load CIFAR-10/100 from `root/<base_folder>/`; download only when absent and the host is reachable."""
    cls = dataset_class(name, verify_checksums)
    root = Path(root)
    folder = root / cls.base_folder
    try:
        return _read(name, cls, root)
    except RuntimeError:  # torchvision: files not found or failing their checksums
        pass
    present = all((folder / f).is_file() for f in _expected_files(cls))
    reason = _download(cls, root)
    if reason is not None and present:
        raise UserError(
            f"The {name} files in {folder} fail torchvision's checksum check and a fresh copy could not be "
            f"downloaded ({reason}); replace them with the originals, or set dataset.verify_checksums=false "
            f"if they are a deliberate re-pack."
        )
    if reason is not None:
        raise UserError(_missing_message(name, cls, folder, reason))
    try:
        return _read(name, cls, root)
    except RuntimeError as err:
        raise UserError(
            f"{name} in {folder} is still unreadable after downloading ({err}); delete {folder} "
            f"and run again."
        ) from None


def _read(name: str, cls: type, root: Path) -> ImageData:
    """Read both splits with the torchvision class; unreadable pickles become a UserError."""
    try:
        train, test = cls(str(root), train=True), cls(str(root), train=False)
    except (pickle.UnpicklingError, EOFError, KeyError, ValueError) as err:
        raise UserError(
            f"The {name} files in {root / cls.base_folder} cannot be read ({type(err).__name__}: {err}); "
            f"replace them with the original python-version files."
        ) from None
    mean, std = NORMALIZATION[name]
    return ImageData(
        name=name,
        num_classes=len(train.classes),
        mean=mean,
        std=std,
        train_images=_to_nchw(train.data),
        train_labels=torch.as_tensor(train.targets, dtype=torch.int64),
        val_images=_to_nchw(train.data[:0]),
        val_labels=torch.zeros(0, dtype=torch.int64),
        test_images=_to_nchw(test.data),
        test_labels=torch.as_tensor(test.targets, dtype=torch.int64),
        class_names=list(train.classes),
    )


def _to_nchw(data_nhwc) -> torch.Tensor:
    """torchvision's NHWC uint8 array -> a contiguous uint8 NCHW tensor."""
    return torch.from_numpy(data_nhwc).permute(0, 3, 1, 2).contiguous()
