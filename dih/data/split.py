"""The fixed, class-stratified validation hold-out (SPEC section 1)."""

from __future__ import annotations

import numpy as np
import torch


def stratified_split(labels, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Split positions into (train_idx, val_idx): round(fraction * n_c) of each class held out.

    The choice depends only on the labels, `fraction` and `seed` (never the run's seed), so every method
    and seed sees the same split. Both index tensors are sorted int64.
    """
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
