"""The DIH intermediate classifier heads: one linear layer on each mount point's flattened feature map."""

import math

import torch.nn as nn
from torch import Tensor

from dih.models import probe
from dih.models.output import ModelOutput


class MountedHeads(nn.Module):
    """Classifiers mounted on a model's named stages: ``heads[i]`` reads ``features[stage_names[i]]``.

    Every kind of teacher-side head (DIH's linear heads, MHKD's conv heads, TOFD's auxiliary classifiers)
    is one of these. A subclass's ``__init__(feature_shapes, num_classes)`` sets ``feature_shapes``
    (stage -> ``(C, H, W)``, shallow to deep), ``stage_names`` (the stages that carry a head, in the order
    of the logits) and ``heads``.
    """

    feature_shapes: dict[str, tuple[int, ...]]
    stage_names: tuple[str, ...]
    heads: nn.ModuleList
    version: int = 1  # bump in a subclass when what it computes changes (docs/versions.md)

    @classmethod
    def for_model(cls, model: nn.Module, num_classes: int, image_shape: tuple[int, int, int] = (3, 32, 32)):
        """Heads for the mount points of ``model`` (its ``stage_names``), sized by a probe forward at the data
        set's real resolution, on the model's device and dtype."""
        param = next(model.parameters())
        heads = cls(probe.mount_point_shapes(model, image_shape), num_classes)
        return heads.to(device=param.device, dtype=param.dtype)

    def __len__(self) -> int:
        return len(self.heads)

    def forward(self, features: dict[str, Tensor]) -> list[Tensor]:
        """Logits of each head, shallow to deep, from a model's named features."""
        return [head(features[name]) for name, head in zip(self.stage_names, self.heads, strict=True)]

    def classify(self, features: dict[str, Tensor]) -> tuple[list[Tensor], list[Tensor]]:
        """``(logits, embeddings)``: each head's logits and, where a kind of head has one, the vector its
        final linear layer reads (TOFD matches those); kinds without one return no embeddings."""
        return self(features), []


class FlatLinear(nn.Linear):
    """A linear layer on the flattened feature map."""

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x.flatten(1))


class LinearHeads(MountedHeads):
    """``h_i(f) = W_i vec(f) + b_i`` for each named stage, un-pooled, so a head sees the whole feature map."""

    def __init__(self, feature_shapes: dict[str, tuple[int, ...]], num_classes: int) -> None:
        super().__init__()
        if not feature_shapes:
            raise ValueError("LinearHeads needs at least one feature shape")
        self.stage_names = tuple(feature_shapes)
        self.feature_shapes = {k: tuple(v) for k, v in feature_shapes.items()}
        self.heads = nn.ModuleList(
            FlatLinear(math.prod(s), num_classes) for s in self.feature_shapes.values()
        )


class HeadsOnFrozen(nn.Module):
    """Heads reading a frozen teacher side's features: the model the heads stage trains. The side stays out
    of the module tree, so only the heads are checkpointed and optimised."""

    def __init__(self, side: nn.Module, heads: MountedHeads):
        super().__init__()
        self.heads = heads
        object.__setattr__(self, "side", side)

    def forward(self, images: Tensor) -> ModelOutput:
        logits = self.heads(self.side(images).features)
        return ModelOutput(logits=logits[-1], heads=logits)
