"""The model zoo: one registry of names behind both the teacher and the student config groups."""

from collections.abc import Callable
from functools import cache

import torch.nn as nn

from dih.errors import UserError, unknown_name
from dih.models.resnet import res18, res34
from dih.models.resnet_cifar import res8, res14, res20, res110
from dih.models.vgg import vgg11
from dih.models.wrn import wrn28_2

MODELS: dict[str, Callable[[int], nn.Module]] = {
    "res8": res8,
    "res14": res14,
    "res20": res20,
    "res110": res110,
    "res18": res18,
    "res34": res34,
    "vgg11": vgg11,
    "wrn28_2": wrn28_2,
}
MODEL_NAMES: tuple[str, ...] = tuple(sorted(MODELS))
# The smallest image side a model takes, where there is one: VGG-11's five 2x2 max-pools floor-halve the
# side five times, so an image under 32 pixels reaches the last pool at 1x1 and torch fails inside it.
# The others (strided convolutions, adaptive pooling) take any size.
MIN_IMAGE_SIDE: dict[str, int] = {"vgg11": 32}
# Part of every key of an artifact the model is trained in: bump a model's number when what it computes
# changes (its layers, its initialisation), so no artifact of the old model is reused (docs/versions.md).
MODEL_VERSIONS: dict[str, int] = {name: 1 for name in MODELS}


def build_model(name: str, num_classes: int) -> nn.Module:
    """A freshly initialised model from the zoo; an unknown name is a UserError that lists the known ones."""
    if name not in MODELS:
        raise unknown_name("model", name, MODEL_NAMES)
    if num_classes < 1:
        raise UserError(f"A model needs at least one class, got num_classes={num_classes}; check the data.")
    return MODELS[name](num_classes)


def model_version(name: str) -> int:
    if name not in MODEL_VERSIONS:
        raise unknown_name("model", name, MODEL_NAMES)
    return MODEL_VERSIONS[name]


def parameter_count(module: nn.Module) -> int:
    """The number of parameters (trainable or not) of a module; buffers such as BN statistics excluded."""
    return sum(p.numel() for p in module.parameters())


@cache
def model_size(name: str) -> int:
    """Parameters of the zoo model ``name`` at 100 classes: what "larger" and "smaller" mean here."""
    return parameter_count(build_model(name, 100))


def check_image_size(name: str, height: int, width: int, role: str = "model") -> None:
    """Refuse, in one sentence, images too small for the zoo model ``name`` (``MIN_IMAGE_SIDE``)."""
    side = MIN_IMAGE_SIDE.get(name)
    if side is None or min(height, width) >= side:
        return
    any_size = ", ".join(n for n in MODEL_NAMES if n not in MIN_IMAGE_SIDE)
    raise UserError(
        f"The {role} {name} needs images of at least {side}x{side} pixels (its max-pools halve them to 1x1 "
        f"before the last one), but these are {height}x{width}; set a larger dataset.image_size= or choose "
        f"a model that takes any size ({any_size})."
    )
