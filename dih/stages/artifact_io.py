"""What a stage writes into its artifact, and how a later stage loads it back into modules."""

import torch
from torch import nn

from dih.errors import UserError
from dih.models import build_model, heads_class
from dih.stages.runtime import Runtime
from dih.store.artifacts import Artifact
from dih.teacher_side.side import TeacherSide


def model_payload(model: nn.Module, name: str, num_classes: int) -> dict:
    """What a model artifact stores: enough to rebuild the model by name."""
    return {"name": name, "num_classes": num_classes, "model": _cpu_state(model)}


def heads_payload(heads: nn.Module, kind: str, num_classes: int) -> dict:
    """What a heads artifact stores: the kind, the shapes it was built for, and the weights."""
    shapes = {name: list(shape) for name, shape in heads.feature_shapes.items()}
    return {"kind": kind, "shapes": shapes, "num_classes": num_classes, "heads": _cpu_state(heads)}


def load_model(artifact: Artifact, device: torch.device) -> nn.Module:
    """A zoo model with the weights of a teacher, assistant, hint or student artifact."""
    payload = artifact.load()
    model = build_model(payload["name"], payload["num_classes"])
    try:
        model.load_state_dict(payload["model"])
    except RuntimeError as exc:
        raise UserError(
            f"Artifact {artifact.key} does not hold a {payload['name']}; delete {artifact.path}."
        ) from exc
    return model.to(device)


def load_heads(artifact: Artifact, device: torch.device) -> nn.Module:
    payload = artifact.load()
    shapes = {name: tuple(shape) for name, shape in payload["shapes"].items()}
    heads = heads_class(payload["kind"])(shapes, payload["num_classes"])
    heads.load_state_dict(payload["heads"])
    return heads.to(device)


def teacher_side(upstream: dict[str, Artifact], rt: Runtime, bf16: bool) -> TeacherSide | None:
    """The frozen teacher side a stage reads from its ``teacher`` (and ``heads``) artifacts; None without a
    teacher."""
    if "teacher" not in upstream:
        return None
    heads = load_heads(upstream["heads"], rt.device) if "heads" in upstream else None
    return TeacherSide(load_model(upstream["teacher"], rt.device), heads, rt.speed(bf16))


def _cpu_state(module: nn.Module) -> dict:
    return {k: v.detach().cpu() for k, v in module.state_dict().items()}
