"""The fixed, class-stratified validation hold-out (SPEC section 1) and the class-balanced training subset."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from dih.errors import UserError

if TYPE_CHECKING:  # torch is imported where a split is made: the config check imports this package
    import torch


def stratified_split(labels, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Split positions into (train_idx, val_idx): round(fraction * n_c) of each class held out.

    The choice depends only on the labels, `fraction` and `seed` (never the run's seed), so every method
    and seed sees the same split. Both index tensors are sorted int64.
    """
    import torch

    if not 0.0 <= float(fraction) < 1.0:
        raise ValueError(f"fraction must be in [0, 1), got {fraction}")
    labels_np = np.asarray(labels.cpu() if isinstance(labels, torch.Tensor) else labels).reshape(-1)
    rng = np.random.default_rng(int(seed))
    held_out = []
    for c in np.unique(labels_np):
        members = np.flatnonzero(labels_np == c)
        k = round(float(fraction) * len(members))
        if k:
            held_out.append(rng.permutation(members)[:k])
    val = np.sort(np.concatenate(held_out)) if held_out else np.zeros(0, dtype=np.int64)
    keep = np.ones(len(labels_np), dtype=bool)
    keep[val] = False
    train = np.flatnonzero(keep)
    return torch.from_numpy(train.astype(np.int64)), torch.from_numpy(val.astype(np.int64))


def too_many_per_class(per_class: int, which: str, size: int, held: int, fraction: float) -> UserError:
    """The refusal of a train_per_class that ``which`` class ("class cat") of ``size`` training images,
    ``held`` of them held out for validation, cannot give; it names the largest value that fits."""
    validation = f", {held} of them held out for validation (val_fraction {fraction:g})" if held else ""
    lower = " or lower dataset.val_fraction" if held else ""
    return UserError(
        f"dataset.train_per_class={per_class} is more than {which} can give: it has {size} "
        f"training images{validation}; set train_per_class to at most {size - held}{lower}."
    )


def subset_split(
    labels, per_class: int, fraction: float, seed: int, class_names: list[str]
) -> tuple[torch.Tensor, torch.Tensor]:
    """A class-balanced training subset of `per_class` images of each class, and the validation split held
    out of the rest: (train_idx, val_idx), both sorted int64.

    Each class is permuted once with `seed`: its first `per_class` images train, the next round(fraction *
    n_c) validate (as many as the full-data split holds out), the rest go unused. A class too small for
    both is refused with the largest `per_class` that fits.
    """
    import torch

    labels_np = np.asarray(labels.cpu() if isinstance(labels, torch.Tensor) else labels).reshape(-1)
    classes = np.unique(labels_np)
    sizes = {int(c): int((labels_np == c).sum()) for c in classes}
    held = {c: round(float(fraction) * n) for c, n in sizes.items()}
    tightest = min(sizes, key=lambda c: (sizes[c] - held[c], c))
    if per_class > sizes[tightest] - held[tightest]:
        raise too_many_per_class(
            per_class, f"class {class_names[tightest]}", sizes[tightest], held[tightest], float(fraction)
        )
    rng = np.random.default_rng(int(seed))
    train, val = [], []
    for c in classes:
        order = rng.permutation(np.flatnonzero(labels_np == c))
        train.append(order[:per_class])
        val.append(order[per_class : per_class + held[int(c)]])
    return (
        torch.from_numpy(np.sort(np.concatenate(train)).astype(np.int64)),
        torch.from_numpy(np.sort(np.concatenate(val)).astype(np.int64)),
    )


def check_split(
    labels: torch.Tensor,
    train_idx: torch.Tensor,
    val_idx: torch.Tensor,
    class_names: list[str],
    fraction: float,
    more_images: str | None,
) -> None:
    """Refuse a split a run cannot use: a class with no training image (an output nothing trains, as when
    synthetic train_size is below num_classes) or, with val_fraction above 0, no validation image at all
    (round(fraction * n) is 0 in every class, and best-val selection would silently have nothing).
    ``more_images``: how this data set gets more images, or None where it cannot."""
    import torch

    count = len(class_names)
    sizes = torch.bincount(labels, minlength=count)
    trained = torch.bincount(labels[train_idx], minlength=count)
    held = torch.bincount(labels[val_idx], minlength=count)
    more = f"{more_images}, " if more_images else ""
    empty = [c for c in range(count) if trained[c] == 0]
    if empty:
        names = ", ".join(class_names[c] for c in empty[:5]) + (", ..." if len(empty) > 5 else "")
        if int(held[empty].sum()) == 0:
            fix = more_images or "its files are incomplete, restore the original ones"
            raise UserError(f"{len(empty)} of the {count} classes ({names}) have no training image; {fix}.")
        raise UserError(
            f"dataset.val_fraction={fraction:g} holds out every training image of {len(empty)} class(es) "
            f"({names}); {more}lower dataset.val_fraction."
        )
    if fraction > 0 and len(val_idx) == 0:
        largest = int(sizes.max())
        raise UserError(
            f"dataset.val_fraction={fraction:g} holds out no validation image (the largest class has "
            f"{largest} training images and round({fraction:g} x {largest}) is 0); {more}raise "
            "dataset.val_fraction, or set it to 0 to train without validation."
        )
