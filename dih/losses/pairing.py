"""Which student stage is matched with which teacher stage by the feature losses (AT, FitNets, TOFD, MHKD),
and how two paired maps are brought to one size."""

import torch
import torch.nn.functional as F
from torch import Tensor


def pair_stages(student_stages: tuple[str, ...], teacher_stages: tuple[str, ...]) -> list[tuple[str, str]]:
    """Pairs ``(student stage, teacher stage)``, shallow to deep; with unequal counts the deepest stages pair
    up (a 3-stage res8 under a 4-stage res34 meets the teacher's stages 2-4), as SPEC s.5 says for AT."""
    n = min(len(student_stages), len(teacher_stages))
    return list(zip(student_stages[len(student_stages) - n :], teacher_stages[len(teacher_stages) - n :]))


def match_spatial(a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    """Average-pool whichever map is spatially larger to the other's size, so the two can be compared."""
    size = (min(a.shape[-2], b.shape[-2]), min(a.shape[-1], b.shape[-1]))
    pool = lambda f: f if tuple(f.shape[-2:]) == size else F.adaptive_avg_pool2d(f, size)
    return pool(a), pool(b)


def as_float(f: Tensor) -> Tensor:
    """``f`` in float32 where it is in a lower precision (bf16 autocast); float64 stays float64."""
    return f if f.dtype == torch.float64 else f.float()
