"""What every model returns: its logits and, by name, the feature maps heads and feature losses attach to."""

from dataclasses import dataclass, field

from torch import Tensor


@dataclass
class ModelOutput:
    """Logits plus named feature maps, ordered shallow to deep (``stage1``, ``stage2``, ...).

    ``heads`` holds the logits of classifiers mounted on a frozen model's stages, shallow to deep, when
    they are what a stage trains (the heads stage); ``logits`` is then the deepest head's.
    """

    logits: Tensor
    features: dict[str, Tensor] = field(default_factory=dict)
    heads: list[Tensor] = field(default_factory=list)
