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
    return device


def seed_everything(seed: int) -> None:
    """Seed every random number generator a stage uses; called once at the start of each stage."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
