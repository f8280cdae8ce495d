"""What a loss may need to know to build its own learnable parts (a regressor, embeddings, a memory bank,
auxiliary classifiers): the shapes on both sides and the size of the training set."""

from dataclasses import dataclass

from torch import Tensor


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
