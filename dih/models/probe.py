"""Feature shapes of a model at a given input size, from one probe forward."""

import torch
from torch import nn


@torch.no_grad()
def feature_shapes(model: nn.Module, image_shape: tuple[int, int, int]) -> dict[str, tuple[int, ...]]:
    """Per-example shape of every named feature ``model`` returns for images of ``image_shape``.

    Runs two zero images in eval mode (batch norm statistics untouched) and restores the training flag.
    """
    param = next(model.parameters())
    was_training = model.training
    model.eval()
    try:
        out = model(torch.zeros(2, *image_shape, device=param.device, dtype=param.dtype))
    finally:
        model.train(was_training)
    return {name: tuple(f.shape[1:]) for name, f in out.features.items()}


def mount_point_shapes(model: nn.Module, image_shape: tuple[int, int, int]) -> dict[str, tuple[int, ...]]:
    """Per-example shapes of ``model``'s mount points (``stage_names``) only, shallow to deep."""
    shapes = feature_shapes(model, image_shape)
    return {name: shapes[name] for name in model.stage_names}
