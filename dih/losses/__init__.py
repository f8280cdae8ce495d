"""Student losses, one small module per method. Each is an ``nn.Module`` called as
``loss(student_output, teacher_output, batch) -> (total, {part name: weighted part})``; the parts add up
to the total, and a loss with parameters of its own (a regressor, an embedding) learns with the student."""

from torch import nn

from dih.errors import unknown_name
from dih.losses.ce import CELoss
from dih.losses.dih import DIHLoss
from dih.losses.kd import KDLoss, soft_kl

LOSSES = {"ce": CELoss, "kd": KDLoss, "dih": DIHLoss}


def build_loss(config: dict) -> nn.Module:
    """The loss named by ``config["name"]``, constructed with the rest of ``config``."""
    settings = dict(config)
    name = settings.pop("name")
    if name not in LOSSES:
        raise unknown_name("loss", name, LOSSES)
    return LOSSES[name](**settings)


__all__ = ["LOSSES", "build_loss", "CELoss", "KDLoss", "DIHLoss", "soft_kl"]
