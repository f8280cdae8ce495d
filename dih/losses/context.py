"""What a loss may need to know to build its own learnable parts (a regressor, embeddings, a memory bank,
auxiliary classifiers): the shapes on both sides and the size of the training set."""

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from dih.models.probe import feature_shapes


@dataclass(frozen=True)
class LossContext:
    """Shapes are per example: ``(C, H, W)`` for feature maps, ``(D,)`` for the ``embedding``."""

    num_classes: int
    num_train: int  # training-set size: CRD's memory banks have one row per training image
    image_shape: tuple[int, int, int]
    student_features: dict[str, tuple[int, ...]]  # the student's named features, shallow to deep
    student_stages: tuple[str, ...]  # the student's mount points (``stage1``, ...), shallow to deep
    teacher_features: dict[str, tuple[int, ...]] | None = None  # the teacher's, when there is a teacher
    teacher_stages: tuple[str, ...] = ()
    train_labels: Tensor | None = (
        None  # labels of the training split, by index (CRD draws negatives by class)
    )
    epochs: int = (
        0  # the stage's epochs: a loss that changes with the epoch (TOFD) reads ``batch.epoch`` / this
    )


def loss_context(
    data, student: nn.Module, side: nn.Module | None, device: torch.device, epochs: int
) -> LossContext:
    """The context of a loss that trains ``student`` on ``data`` (an ``ImageData``) for ``epochs`` against the
    frozen teacher ``side`` (None without one, or when the stage reads the cohort cache)."""
    shape = data.image_shape
    return LossContext(
        num_classes=data.num_classes,
        num_train=len(data.train_labels),
        image_shape=shape,
        student_features=feature_shapes(student, shape),
        student_stages=tuple(student.stage_names),
        teacher_features=feature_shapes(side.teacher, shape) if side is not None else None,
        teacher_stages=tuple(side.teacher.stage_names) if side is not None else (),
        train_labels=data.train_labels.to(device),
        epochs=epochs,
    )
