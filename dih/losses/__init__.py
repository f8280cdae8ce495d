"""Student losses, one small module per method. Each is an ``nn.Module`` called as
``loss(student_output, teacher_output, batch) -> (total, {part name: weighted part})``; the parts add up
to the total, and a loss with parameters of its own (embeddings, student heads, links) learns with the
student. A loss that needs shapes or the training-set size takes a ``context`` (``LossContext``)."""

import inspect

from torch import nn

from dih.errors import UserError, unknown_name
from dih.losses.at import ATLoss
from dih.losses.ce import CELoss
from dih.losses.context import LossContext
from dih.losses.crd import CRDLoss
from dih.losses.dih import DIHLoss
from dih.losses.fitnets import HintLoss
from dih.losses.heads import HeadsLoss
from dih.losses.kd import KDLoss, soft_kl
from dih.losses.mhkd import MHKDLoss
from dih.losses.tofd import TOFDLoss

LOSSES: dict[str, type[nn.Module]] = {
    "ce": CELoss,
    "kd": KDLoss,
    "dih": DIHLoss,
    "at": ATLoss,
    "crd": CRDLoss,
    "tofd": TOFDLoss,
    "mhkd": MHKDLoss,
}
# Losses that read only the cohort's logits, never the teacher's features: the cohort cache serves them.
LOGITS_ONLY = {"kd", "dih"}
NEEDS_TEACHER = {"kd", "dih", "at", "crd", "tofd", "mhkd"}


def loss_class(name: str) -> type[nn.Module]:
    if name not in LOSSES:
        raise unknown_name("loss", name, LOSSES)
    return LOSSES[name]


def build_loss(config: dict, context: LossContext | None = None) -> nn.Module:
    """The loss named by ``config["name"]``, constructed with the rest of ``config`` (and the context)."""
    settings = dict(config)
    name = settings.pop("name")
    cls = loss_class(name)
    if "context" in inspect.signature(cls).parameters:
        settings["context"] = context
    try:
        return cls(**settings)
    except TypeError as exc:
        raise UserError(
            f"Bad settings for the {name} loss ({exc}); check method.loss in the config."
        ) from exc


__all__ = [
    "LOSSES",
    "LossContext",
    "build_loss",
    "loss_class",
    "ATLoss",
    "CELoss",
    "CRDLoss",
    "DIHLoss",
    "HeadsLoss",
    "HintLoss",
    "KDLoss",
    "MHKDLoss",
    "TOFDLoss",
    "soft_kl",
]
