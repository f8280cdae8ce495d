"""What every model returns: its logits and, by name, the feature maps heads and feature losses attach to."""

from dataclasses import dataclass, field

from torch import Tensor


@dataclass
class ModelOutput:
    """Logits plus named feature maps, ordered shallow to deep (``stage1``, ``stage2``, ...)."""

    logits: Tensor
    features: dict[str, Tensor] = field(default_factory=dict)
