"""The DIH intermediate classifier heads: one linear layer on each mount point's flattened feature map."""

import math

import torch.nn as nn
from torch import Tensor

from dih.models import probe


class LinearHeads(nn.Module):
    """``h_i(f) = W_i vec(f) + b_i`` for each named stage, un-pooled, so a head sees the whole feature map.

    ``feature_shapes`` maps stage names, shallow to deep, to per-example shapes (``(C, H, W)``); the
    order given is the order of the heads and of the logits ``forward`` returns.
    """

    def __init__(self, feature_shapes: dict[str, tuple[int, ...]], num_classes: int) -> None:
        super().__init__()
        if not feature_shapes:
            raise ValueError("LinearHeads needs at least one feature shape")
        self.stage_names: tuple[str, ...] = tuple(feature_shapes)
        self.feature_shapes: dict[str, tuple[int, ...]] = {k: tuple(v) for k, v in feature_shapes.items()}
        self.heads = nn.ModuleList(nn.Linear(math.prod(s), num_classes) for s in self.feature_shapes.values())

    @classmethod
    def for_model(
        cls, model: nn.Module, num_classes: int, image_shape: tuple[int, int, int] = (3, 32, 32)
    ) -> "LinearHeads":
        """Heads for every mount point of ``model`` (its ``stage_names``), sized by a probe forward.

        The probe runs a batch of two zero images of ``image_shape`` (the data set's real resolution) in
        eval mode without gradient, so BN statistics are untouched; the model's training flag is restored.
        The heads are created on the model's device.
        """
        param = next(model.parameters())
        heads = cls(probe.mount_point_shapes(model, image_shape), num_classes)
        return heads.to(device=param.device, dtype=param.dtype)

    def __len__(self) -> int:
        return len(self.heads)

    def forward(self, features: dict[str, Tensor]) -> list[Tensor]:
        """Logits of each head, shallow to deep, from a model's named features."""
        pairs = zip(self.stage_names, self.heads, strict=True)
        return [head(features[name].flatten(1)) for name, head in pairs]
