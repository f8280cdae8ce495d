"""Which student stage is matched with which teacher stage by the feature losses (AT, FitNets, MHKD from the
shallowest, TOFD from the deepest), and how two paired maps are brought to one size and precision."""

import torch
import torch.nn.functional as F
from torch import Tensor


def pair_stages(
    student_stages: tuple[str, ...], teacher_stages: tuple[str, ...], *, from_deepest: bool = False
) -> list[tuple[str, str]]:
    """Pairs ``(student stage, teacher stage)``, shallow to deep. By default from the shallowest up, as
    RepDistiller and mdistiller zip their feature lists (AT, FitNets, MHKD): with unequal counts the deeper
    stages of the longer list go unpaired (a 3-stage res8 under a 4-stage res34 meets the teacher's stages
    1-3, maps of equal size). ``from_deepest``: the deepest ``min(len)`` stages of each, as the TOFD
    reference indexes its deep-first lists (the final classifiers always pair)."""
    if not from_deepest:
        return list(zip(student_stages, teacher_stages))
    n = min(len(student_stages), len(teacher_stages))
    return list(zip(student_stages[len(student_stages) - n :], teacher_stages[len(teacher_stages) - n :]))


def pool_to(f: Tensor, size: tuple[int, int]) -> Tensor:
    """Average-pool ``f`` (``[B, C, H, W]``) down to ``size``.

    An integer ratio pools with ``avg_pool2d`` (kernel = stride = the ratio). A non-integer ratio averages
    adaptive pooling's windows as two matrix products (rows, then columns): ``adaptive_avg_pool2d`` to a
    size other than 1 has no deterministic CUDA backward and raises under ``trainer.deterministic``
    (dih/train/determinism.py). Both give adaptive pooling's result up to rounding.
    """
    (h, w), (th, tw) = f.shape[-2:], size
    if (h, w) == (th, tw):
        return f
    if h % th == 0 and w % tw == 0:
        kernel = (h // th, w // tw)
        return F.avg_pool2d(f, kernel_size=kernel, stride=kernel)
    return window_means(h, th, f) @ f @ window_means(w, tw, f).T


def window_means(n: int, m: int, like: Tensor) -> Tensor:
    """``[m, n]``: row ``i`` averages positions ``floor(i n / m)`` to ``ceil((i + 1) n / m) - 1``, the window
    of adaptive pooling's output ``i`` (in ``like``'s dtype and device)."""
    weights = torch.zeros(m, n, dtype=like.dtype, device=like.device)
    for i in range(m):
        start, end = (i * n) // m, -(-(i + 1) * n // m)
        weights[i, start:end] = 1.0 / (end - start)
    return weights


def match_spatial(a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    """Average-pool whichever map is spatially larger to the other's size, so the two can be compared."""
    size = (min(a.shape[-2], b.shape[-2]), min(a.shape[-1], b.shape[-1]))
    return pool_to(a, size), pool_to(b, size)


def as_float(f: Tensor) -> Tensor:
    """``f`` in float32 where it is in a lower precision (bf16 autocast); float64 stays float64."""
    return f if f.dtype == torch.float64 else f.float()
