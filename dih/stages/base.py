"""What every stage shares: the run context it builds in, and loading upstream artifacts back into modules."""

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from dih.artifacts import Artifact, ArtifactStore
from dih.data import ImageData, dataset_identity, load_data
from dih.engine import Recipe
from dih.errors import UserError
from dih.models import build_model, heads_class
from dih.models.teacher_side import Speed, TeacherSide
from dih.runtime import teacher_speed

log = logging.getLogger(__name__)


@dataclass
class StageContext:
    """One run's settings, device and data, handed to every stage it builds."""

    cfg: DictConfig
    device: torch.device
    run_dir: Path
    store: ArtifactStore
    on_epoch: Callable[[dict], None] = field(default=lambda line: None)

    @cached_property
    def data(self) -> ImageData:
        """The data set, loaded on first use only (a run whose stages are all reused never loads it)."""
        data = load_data(self.cfg.dataset)
        log.info(
            "data %s: %d train, %d val, %d test images of %s, %d classes",
            data.name,
            len(data.train_labels),
            len(data.val_labels),
            len(data.test_labels),
            "x".join(map(str, data.image_shape)),
            data.num_classes,
        )
        return data

    @cached_property
    def speed(self) -> Speed:
        return teacher_speed(self.cfg.teacher_side, self.device)

    def teacher_side(self, teacher: nn.Module, heads: nn.Module | None = None) -> TeacherSide:
        """A frozen teacher side that runs as the ``teacher_side`` settings say."""
        return TeacherSide(teacher, heads, self.speed)

    def data_identity(self) -> dict:
        return dataset_identity(self.cfg.dataset)

    def recipe(self, **overrides) -> Recipe:
        return Recipe.from_config(self.cfg.trainer, **overrides)

    def method_setting(self, name: str, default=None):
        """A plain-Python copy of ``method.<name>`` (for hashing and for constructors)."""
        value = self.cfg.method.get(name, default)
        return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value

    def fit_options(self, seed: int, stage: str) -> dict:
        """The keyword arguments every stage passes to ``engine.fit``."""
        return {
            "seed": seed,
            "stage": stage,
            "on_epoch": self.on_epoch,
            "progress": self.cfg.trainer.progress,
        }


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


def model_payload(model: nn.Module, name: str, num_classes: int) -> dict:
    """What a model artifact stores: enough to rebuild the model by name."""
    return {"name": name, "num_classes": num_classes, "model": _cpu_state(model)}


def heads_payload(heads: nn.Module, kind: str, num_classes: int) -> dict:
    """What a heads artifact stores: the kind, the shapes it was built for, and the weights."""
    shapes = {name: list(shape) for name, shape in heads.feature_shapes.items()}
    return {"kind": kind, "shapes": shapes, "num_classes": num_classes, "heads": _cpu_state(heads)}


def load_heads(artifact: Artifact, device: torch.device) -> nn.Module:
    payload = artifact.load()
    shapes = {name: tuple(shape) for name, shape in payload["shapes"].items()}
    heads = heads_class(payload["kind"])(shapes, payload["num_classes"])
    heads.load_state_dict(payload["heads"])
    return heads.to(device)


def _cpu_state(module: nn.Module) -> dict:
    return {k: v.detach().cpu() for k, v in module.state_dict().items()}
