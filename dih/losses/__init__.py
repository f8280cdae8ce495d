"""Student losses, one small module per method. Each is an ``nn.Module`` called as
``loss(student_output, teacher_output, batch) -> (total, {part name: weighted part})``; the parts add up
to the total, and a loss with parameters of its own (embeddings, student heads, links) learns with the
student. A loss that needs shapes or the training-set size takes a ``context`` (``LossContext``).

A method's loss is a ``MethodLoss`` (dih/losses/base.py) declaring its name, what it needs from the teacher
side, its version and its settings. ``LOSSES`` is found, not written: every module of this package is
imported and its ``MethodLoss`` classes collected, so a new method is one module here (and its YAML under
conf/method/). The heads and hint stages' own losses (``HeadsLoss``, ``HintLoss``) are no methods."""

import importlib
import inspect
import pkgutil

from dih.errors import UserError, unknown_name
from dih.losses.at import ATLoss
from dih.losses.base import MethodLoss, Needs
from dih.losses.ce import CELoss
from dih.losses.context import LossContext
from dih.losses.crd import CRDLoss
from dih.losses.dih import DIHLoss
from dih.losses.fitnets import HintLoss
from dih.losses.heads import HeadsLoss
from dih.losses.kd import KDLoss, soft_kl
from dih.losses.mhkd import MHKDLoss
from dih.losses.tofd import TOFDLoss


def _discover() -> dict[str, type[MethodLoss]]:
    """Every ``MethodLoss`` defined in a module of this package, by name (sorted); two of one name are
    refused."""
    found: dict[str, type[MethodLoss]] = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{__name__}.{info.name}")
        for cls in vars(module).values():
            defined_here = isinstance(cls, type) and cls.__module__ == module.__name__
            if not defined_here or not issubclass(cls, MethodLoss) or cls is MethodLoss:
                continue
            if cls.name in found:
                raise TypeError(
                    f"Two method losses are named {cls.name!r}: {found[cls.name].__module__} and "
                    f"{cls.__module__}; rename one."
                )
            found[cls.name] = cls
    return dict(sorted(found.items()))


LOSSES: dict[str, type[MethodLoss]] = _discover()


def loss_class(name: str) -> type[MethodLoss]:
    if name not in LOSSES:
        raise unknown_name("loss", name, LOSSES)
    return LOSSES[name]


def build_loss(config: dict, context: LossContext | None = None) -> MethodLoss:
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
    "MethodLoss",
    "Needs",
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
