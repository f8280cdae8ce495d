"""Models: the zoo (teachers and students), their named-feature outputs, and the DIH heads."""

from dih.models.heads import LinearHeads
from dih.models.output import ModelOutput
from dih.models.zoo import MODEL_NAMES, build_model, parameter_count

__all__ = ["MODEL_NAMES", "LinearHeads", "ModelOutput", "build_model", "parameter_count"]
