"""How much memory is free for data: on the host (the machine's, or the job's cgroup limit where that is
lower) and on a device. Shared by the cohort cache and the data loading, so both ask the same question."""

from __future__ import annotations

from pathlib import Path

import torch

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
