"""Models: the zoo (teachers and students), their named-feature outputs, and the teacher-side heads."""

from dih.errors import unknown_name
from dih.models.heads import LinearHeads, MountedHeads
from dih.models.mhkd_heads import MHKDHeads
from dih.models.output import ModelOutput
from dih.models.probe import feature_shapes
from dih.models.tofd_aux import TOFDAuxHeads
from dih.models.zoo import MODEL_NAMES, build_model, model_size, parameter_count

# Classifiers mounted on a frozen teacher's stages, by the name a method's ``heads:`` setting uses. Each is
# built as ``cls(feature_shapes, num_classes)`` or ``cls.for_model(model, num_classes, image_shape)``.
HEAD_KINDS: dict[str, type[MountedHeads]] = {"linear": LinearHeads, "mhkd": MHKDHeads, "tofd": TOFDAuxHeads}


def heads_class(kind: str) -> type[MountedHeads]:
    if kind not in HEAD_KINDS:
        raise unknown_name("kind of heads", kind, HEAD_KINDS)
    return HEAD_KINDS[kind]


__all__ = [
    "HEAD_KINDS",
    "MODEL_NAMES",
    "LinearHeads",
    "MountedHeads",
    "ModelOutput",
    "build_model",
    "feature_shapes",
    "heads_class",
    "model_size",
    "parameter_count",
]
