"""Device facts, on the ground floor: which device a run uses (``device=auto`` picks CUDA when present),
whether it has native bf16, and how much memory is free for data on the host (the machine's, or the job's
cgroup limit where that is lower) and on a device. The planner, the cohort cache and the data loading all
ask these questions here, so they get the same answers."""

from __future__ import annotations

from pathlib import Path

import torch

from dih.errors import UserError

# A cgroup v1 "no limit" is 2^63 rounded down to a page; anything this large is no limit.
_NO_LIMIT = 1 << 60
# Share of free host memory a decoded data set may fill: the rest is left for models, batches, the loader's
# copies and the page cache (docs/choices.md).
HOST_SHARE = 0.8


def _meminfo_available(meminfo: Path = Path("/proc/meminfo")) -> int | None:
    try:
        with open(meminfo) as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return None if text == "max" else int(text) if text.isdigit() else None


def _stat(path: Path, name: str) -> int:
    try:
        for line in path.read_text().splitlines():
            key, _, value = line.partition(" ")
            if key == name and value.strip().isdigit():
                return int(value)
    except OSError:
        pass
    return 0


def cgroup_available(root: Path = Path("/sys/fs/cgroup")) -> int | None:
    """What the job's memory cgroup still allows (its limit less its usage, reclaimable file pages not
    counted as used), or None without a limit. A Slurm job's ``mem_gb`` is such a limit, far below the
    node's free memory; going over it gets the job killed, with no Python exception."""
    for limit_file, usage_file, stat_file, inactive in (
        ("memory.max", "memory.current", "memory.stat", "inactive_file"),  # cgroup v2
        (
            "memory/memory.limit_in_bytes",
            "memory/memory.usage_in_bytes",
            "memory/memory.stat",
            "total_inactive_file",
        ),  # v1
    ):
        limit = _read_int(root / limit_file)
        usage = _read_int(root / usage_file)
        if limit is not None and usage is not None and limit < _NO_LIMIT:
            return max(0, limit - usage + _stat(root / stat_file, inactive))
    return None


def host_available_bytes() -> int | None:
    """Host memory a process can still take: the lower of ``MemAvailable`` and the cgroup's allowance;
    None where neither can be read (not Linux)."""
    known = [v for v in (_meminfo_available(), cgroup_available()) if v is not None]
    return min(known) if known else None


def free_bytes(device: torch.device) -> int:
    """Free memory on `device`: the GPU's free memory on CUDA, else the host's available memory (0 where
    it cannot be read, so whatever asks treats nothing as fitting)."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    return host_available_bytes() or 0


def decoded_fits(nbytes: int, free: int | None, share: float = HOST_SHARE) -> bool:
    """Whether an array of `nbytes` may be made in host memory with `free` bytes available: it must fit in
    `share` of it. Unknown free memory (None) cannot be checked, so it is taken to fit."""
    return free is None or nbytes <= share * free


def gib(nbytes: float) -> str:
    """`nbytes` for a message, in GiB with one decimal (two below 1 GiB)."""
    value = nbytes / 2**30
    return f"{value:.1f} GiB" if value >= 1 else f"{value:.2f} GiB"


# ---- which device, and what it can do ------------------------------------------------------------------


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
