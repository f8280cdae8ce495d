"""The precision rule of the frozen teacher side: where ``teacher_side.bf16=auto`` runs it in bf16, and
what a run is told where bf16 is emulated. ``python -m dih.precision_check`` measures the rule on a device."""

import torch

from dih.device import cpu_has_native_bf16, has_native_bf16


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
