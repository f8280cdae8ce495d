"""The heads stage's loss (SPEC s.3): every head mounted on the frozen teacher learns from the labels,
``sum_i CE(h_i(f_i), y)``, all in one optimiser."""

import torch.nn.functional as F
from torch import Tensor, nn


class HeadsLoss(nn.Module):
    version = 1

    def forward(self, heads, teacher, batch) -> tuple[Tensor, dict[str, Tensor]]:
        parts = {f"ce_head{i}": F.cross_entropy(z, batch.labels) for i, z in enumerate(heads.heads, 1)}
        return sum(parts.values()), parts
