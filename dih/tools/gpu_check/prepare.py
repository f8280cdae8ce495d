"""Preparing ``.gpu/`` for a bare GPU machine (torch, torchvision, numpy; no internet): the pure-Python
wheels and the data archive it lacks (``python -m dih.tools.gpu_check prepare``, run here, online), and the
paths the check finds them at."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]  # the checkout
GPU_DIR = ROOT / ".gpu"  # what prepare fills
SITE = GPU_DIR / "site"
ARCHIVE = "cifar10_jpg.tar.gz"
DATA_ARCHIVE = ROOT.parent / "shared" / "data" / ARCHIVE  # where this project's sessions find it
# Pure-Python wheels a bare GPU machine lacks (the versions .venv runs); PyYAML is fetched for the GPU
# machine's Python (``--python-version``), as its wheel carries a compiled part.
WHEELS = [
    "hydra-core==1.3.8",
    "omegaconf==2.3.1",
    "antlr4-python3-runtime==4.9.3",
    "hydra-submitit-launcher==1.2.0",
    "submitit==1.5.4",
    "cloudpickle",
]


def prepare(python_version: str, archive: Path) -> int:
    """Fill ``.gpu/``: the wheels and the data archive. Run from a machine with the package registry."""
    pip = [sys.executable, "-m", "pip", "install", "--quiet", "--target", str(SITE), "--no-deps"]
    shutil.rmtree(GPU_DIR, ignore_errors=True)
    SITE.mkdir(parents=True)
    subprocess.run([*pip, *WHEELS], check=True)
    subprocess.run([*pip, "--only-binary=:all:", "--python-version", python_version, "--platform",
                    "manylinux2014_x86_64", "pyyaml==6.0.2"], check=True)  # fmt: skip
    if not archive.is_file():
        print(f"No data archive at {archive}; pass --archive.", file=sys.stderr)
        return 2
    shutil.copy(archive, GPU_DIR / ARCHIVE)
    git = ["git", "describe", "--always", "--dirty"]
    head = subprocess.run(git, cwd=ROOT, capture_output=True, text=True)
    (GPU_DIR / "commit").write_text(head.stdout.strip() or "unknown")  # the report names what was checked
    size = sum(f.stat().st_size for f in GPU_DIR.rglob("*") if f.is_file())
    print(f"{GPU_DIR}: {size / 2**20:.1f} MiB (wheels, {ARCHIVE}); then, on the GPU machine: make gpu-check")
    return 0
