"""How deterministic a run's kernels are, and the record of where a checkpoint was written.

Exact resume (docs/choices.md) needs every kernel to give the same bits for the same inputs. CPU kernels
here do for a fixed thread count. On CUDA that takes cuDNN's deterministic algorithms (and no autotuning),
torch's deterministic implementations, a fixed cuBLAS workspace, and no TF32 (whose use can depend on the
kernel picked); ``trainer.deterministic`` (default true) asks for all of it. None of it changes what is
trained, only floating-point rounding, so like the device it is in no artifact key.

Even so, bits match only on the same device model and software versions: each checkpoint records them, and
a stage resumed elsewhere says so in a warning (and still resumes).
"""

import logging
import os
import platform
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

log = logging.getLogger(__name__)

# cuBLAS picks its reduction split by workspace: a fixed workspace configuration makes its GEMMs
# deterministic (NVIDIA's cuBLAS docs, "Results reproducibility"; with deterministic algorithms on, torch
# raises at a cuBLAS call without it). torch reads the workspace size once per process, at its first
# cuBLAS call (``at::cuda::getChosenWorkspaceSize``), so it is set before any model is built, and on CUDA
# with ``trainer.deterministic=false`` too: a process that runs several runs (Hydra's basic launcher) then
# has it whichever run comes first. A value already in the environment (``:16:8`` is the other valid one)
# is kept.
CUBLAS_WORKSPACE_CONFIG = ":4096:8"


def _set_env_default(value: str) -> None:
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", value)


# What each setting's name sets; the environment variable comes first, before anything touches cuBLAS.
_SETTERS: dict[str, Callable[[Any], None]] = {
    "env.CUBLAS_WORKSPACE_CONFIG": _set_env_default,
    "torch.backends.cudnn.deterministic": lambda v: setattr(torch.backends.cudnn, "deterministic", v),
    "torch.backends.cudnn.benchmark": lambda v: setattr(torch.backends.cudnn, "benchmark", v),
    "torch.use_deterministic_algorithms": torch.use_deterministic_algorithms,
    "torch.backends.cuda.matmul.allow_tf32": lambda v: setattr(torch.backends.cuda.matmul, "allow_tf32", v),
    "torch.backends.cudnn.allow_tf32": lambda v: setattr(torch.backends.cudnn, "allow_tf32", v),
}


def determinism_settings(device_type: str, deterministic: bool) -> dict[str, Any]:
    """What to set for a run on ``device_type``: on CUDA, deterministic kernels and no TF32, or (when
    ``deterministic`` is false) cuDNN autotuning and TF32; elsewhere nothing (CPU kernels are deterministic
    for a fixed thread count, which the checkpoint records)."""
    if device_type != "cuda":
        return {}
    d = bool(deterministic)
    return {
        # set in both modes: torch reads it once, at a process's first cuBLAS call
        "env.CUBLAS_WORKSPACE_CONFIG": CUBLAS_WORKSPACE_CONFIG,
        "torch.backends.cudnn.deterministic": d,
        "torch.backends.cudnn.benchmark": not d,  # autotuning picks kernels by timing: not reproducible
        "torch.use_deterministic_algorithms": d,
        "torch.backends.cuda.matmul.allow_tf32": not d,
        "torch.backends.cudnn.allow_tf32": not d,
    }


def apply_determinism(device_type: str, deterministic: bool) -> dict[str, Any]:
    """Set ``determinism_settings``; called where a run sets up its device, before any model is built.
    Returns what it set."""
    settings = determinism_settings(device_type, deterministic)
    for name, value in settings.items():
        _SETTERS[name](value)
    if settings:
        log.info(
            "CUDA: %s",
            "deterministic kernels, TF32 off (trainer.deterministic=true)"
            if deterministic
            else "cuDNN autotuning and TF32 on, not reproducible (trainer.deterministic=false)",
        )
    return settings


def environment(device: torch.device | str) -> dict[str, Any]:
    """What a checkpoint's bits depend on beyond the config: the device model, the software versions, and
    on CPU the thread count; on CUDA whether deterministic algorithms were on."""
    device = torch.device(device)
    cuda, cpu = device.type == "cuda", device.type == "cpu"
    return {
        "device_type": device.type,
        "device": torch.cuda.get_device_name(device) if cuda else _cpu_name() if cpu else str(device),
        "torch": str(torch.__version__),  # a str subclass weights-only loading refuses
        "cuda": str(torch.version.cuda) if cuda else None,
        "cudnn": torch.backends.cudnn.version() if cuda else None,
        "threads": torch.get_num_threads() if cpu else None,
        "deterministic": torch.are_deterministic_algorithms_enabled() if cuda else None,
    }


def differences(recorded: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """``name: recorded -> current`` for each entry of the two records that differs."""
    names = list(recorded) + [k for k in current if k not in recorded]
    return [f"{k}: {recorded.get(k)} -> {current.get(k)}" for k in names if recorded.get(k) != current.get(k)]


def _cpu_name() -> str:
    """The CPU's model string (``/proc/cpuinfo`` on Linux, else ``platform``), or ``cpu``."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "cpu"


def seed_everything(seed: int) -> None:
    """Seed every random number generator a stage uses; called once at the start of each stage."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
