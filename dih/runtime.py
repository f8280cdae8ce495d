"""Where a run executes: the device, seeding in one place, and the runtime settings of a build."""

import json
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from dih.data import ImageData, load_data
from dih.engine import Task, fit
from dih.errors import UserError
from dih.models.teacher_side import Speed

log = logging.getLogger(__name__)


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
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise UserError(
            f"device={name} was asked for but this torch has no MPS (Apple GPU) backend here; use "
            "device=auto or cpu."
        )
    _check_supported(name, device.type)
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


def bf16_checked(device_type: str) -> bool:
    """Whether ``teacher_side.bf16=auto`` runs the frozen teacher side in bf16 on a kind of device. Decided
    from the kind alone, because plans (and bf16 is in the keys) are made on machines without the device.

    The check that matters is numeric: bf16 rounding of the frozen side's outputs, the same format on any
    device, kept every classifier of a trained cohort within 0.1 points of float32 (docs/performance.md).
    Speed then decides: on CUDA it is on, as the GPUs these runs use (compute capability 8.0 and later:
    A100, H100, L40, ...) have bf16 tensor cores; an older GPU emulates bf16, and a run there warns
    (``bf16_warning``) since the plan's key cannot change at run time. On a CPU it is on only with native
    bf16 kernels (AVX512-BF16/AMX): without them bf16 is emulated, 30x slower than float32 for res110 on an
    AVX2 EPYC. ``python -m dih.precision_check`` verifies the rule on the user's device."""
    if device_type == "cuda":
        return True
    return device_type == "cpu" and cpu_has_native_bf16()


def cpu_has_native_bf16() -> bool:
    """Whether oneDNN has native bf16 kernels on this CPU (a private torch query: False if it is gone)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def cuda_has_native_bf16(capability: tuple[int, int]) -> bool:
    """bf16 tensor cores: compute capability 8.0 (Ampere) and later; older GPUs emulate bf16."""
    return tuple(capability) >= (8, 0)


def has_native_bf16(device: torch.device) -> bool:
    if device.type == "cuda":
        return cuda_has_native_bf16(torch.cuda.get_device_capability(device))
    return device.type == "cpu" and cpu_has_native_bf16()


def bf16_warning(device: torch.device) -> str | None:
    """What to tell a user whose teacher side runs in bf16 on ``device`` where bf16 is emulated; None where
    it is native."""
    if has_native_bf16(device):
        return None
    return (
        f"The teacher side runs in bf16 but {device} has no native bf16 (a GPU before compute capability "
        "8.0, or a CPU without AVX512-BF16/AMX), so it is emulated and slow; pass teacher_side.bf16=false "
        "(a different key: the stages are planned anew)."
    )


def planned_device_type(name: str) -> str:
    """The kind of device a run will use, without requiring it here (a plan may be made on a login node):
    ``auto`` is CUDA when this machine has it."""
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        kind = torch.device(name).type
    except RuntimeError as exc:
        raise UserError(f"Unknown device '{name}'; use device=auto, cpu, cuda or cuda:N.") from exc
    _check_supported(name, kind)
    return kind


def _check_supported(name: str, kind: str) -> None:
    """The kinds of device runs are made for (others, such as meta or xla, fail inside torch)."""
    if kind not in ("cpu", "cuda", "mps"):
        raise UserError(f"device={name} is not supported; use device=auto, cpu, cuda, cuda:N or mps.")


@dataclass
class Runtime:
    """Where and how a run's stages build: the device, evaluation batch size, progress display, the
    teacher side's layout and compilation, whether the training step is compiled, where the cohort cache
    is held, whether CUDA kernels are deterministic, and the metric hook. None of it changes what a stage
    produces (at most its rounding), so none of it is in a key; the loaded data sets are kept for the
    run's later stages."""

    device: torch.device
    deterministic: bool = True  # applied by plan.runtime when the device is set up (dih/determinism.py)
    eval_batch_size: int = 512
    progress: bool | None = None
    channels_last: bool = False
    compile: bool = False  # teacher_side.compile
    compile_training: bool = False  # trainer.compile: the trained model's step (dih/compiled_step.py)
    cache_device_share: float = 0.5  # the share of the device's free memory the cohort cache may take
    warned: bool = False  # whether the emulated-bf16 warning was logged (once a run)
    on_epoch: Callable[[dict], None] = field(default=lambda line: None)
    loaded: dict[str, ImageData] = field(default_factory=dict)

    def data(self, settings: dict) -> ImageData:
        """The data set of a spec, loaded on first use only (a run whose stages are all reused loads none)."""
        name = json.dumps(settings, sort_keys=True, default=str)
        if name not in self.loaded:
            data = self.loaded[name] = load_data(settings)
            log.info(
                "data %s: %d train, %d val, %d test images of %s, %d classes",
                data.name,
                len(data.train_labels),
                len(data.val_labels),
                len(data.test_labels),
                "x".join(map(str, data.image_shape)),
                data.num_classes,
            )
        return self.loaded[name]

    def speed(self, bf16: bool) -> Speed:
        warning = bf16_warning(self.device) if bf16 else None
        if warning and not self.warned:
            self.warned = True
            log.warning(warning)
        return Speed(bf16=bf16, channels_last=self.channels_last, compile=self.compile)

    def fit(self, task: Task, data: ImageData, spec, work_dir: Path) -> dict:
        """Train ``task`` on ``data`` with the spec's recipe and seed: what every training stage shares."""
        return fit(
            task,
            data,
            spec.recipe,
            self.device,
            work_dir,
            seed=spec.seed,
            stage=spec.kind,
            eval_batch_size=self.eval_batch_size,
            on_epoch=self.on_epoch,
            progress=self.progress,
            compiled=self.compile_training,
        )
