"""Where a run executes: the device from config, and seeding in one place."""

import random

import numpy as np
import torch

from dih.errors import UserError


def resolve_device(name: str) -> torch.device:
    """Turn the config's device string into a torch device; ``auto`` picks CUDA when present."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise UserError(f"Unknown device '{name}'; use device=auto, cpu, cuda or cuda:N.") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device={name} was asked for but this machine has no CUDA; use device=auto or cpu.")
    if device.type == "cpu":
        # Denormal floats (weights and activations of trained models have some) take a slow path on x86
        # CPUs; flushing them to zero made the DIH student stage ~30% faster here (docs/performance.md).
        torch.set_flush_denormal(True)
    return device


def seed_everything(seed: int) -> None:
    """Seed every random number generator a stage uses; called once at the start of each stage."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def teacher_speed(settings, device: torch.device):
    """The frozen teacher side's ``Speed`` on ``device`` from the ``teacher_side`` config."""
    from dih.models.teacher_side import Speed

    def choose(value, auto: bool) -> bool:
        return auto if value == "auto" else bool(value)

    return Speed(
        autocast=choose(settings.bf16, bf16_checked(device)),
        channels_last=choose(settings.channels_last, device.type == "cuda"),
        compile=bool(settings.compile),
    )


def bf16_checked(device: torch.device) -> bool:
    """Where bf16 autocast of the teacher side is on by default: where ``python -m dih.precision_check``
    kept every classifier of a trained cohort within 0.1 points of float32 (docs/performance.md). That
    was checked on the CPU; on a GPU run the check and set ``teacher_side.bf16=true``."""
    return device.type == "cpu"
