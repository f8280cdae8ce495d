"""Shared test helpers: run the real entry point in a subprocess on tiny synthetic data."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Small enough for seconds per stage on 2 CPU cores, big enough that accuracy can move.
TINY = [
    "experiment=smoke",
    "dataset.train_size=200",
    "dataset.test_size=100",
    "dataset.image_size=16",
    "trainer.batch_size=32",
    "teacher=res14",
    "student=res8",
]

# How long a test waits on a subprocess or a cluster before calling it hung: a guard, never a budget. Runs
# here are tiny (seconds on an idle machine), but a 2-core machine shared with other work ran them 30 times
# slower, and a guess at their time failed a correct suite (issue 19).
HANG_S = 3600


def run_args(tmp_path: Path, *overrides: str, name: str = "run", tiny: bool = True) -> list[str]:
    """The ``python run.py`` command line: the overrides, artifacts under ``tmp_path/artifacts``, the run
    directory ``tmp_path/name``."""
    return [
        sys.executable,
        str(ROOT / "run.py"),
        *(TINY if tiny else []),
        f"artifacts.root={tmp_path / 'artifacts'}",
        f"hydra.run.dir={tmp_path / name}",
        *overrides,
    ]


def run_cli(
    tmp_path: Path, *overrides: str, name: str = "run", check: bool = True, tiny: bool = True
) -> subprocess.CompletedProcess:
    """``python run.py`` with the given overrides, artifacts under ``tmp_path/artifacts``; output and errors
    together in ``.stdout``."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    args = run_args(tmp_path, *overrides, name=name, tiny=tiny)
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "WANDB_MODE": "offline"}
    proc = subprocess.run(
        args,
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=HANG_S,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"run.py failed ({proc.returncode}):\n{proc.stdout[-4000:]}")
    return proc


def summary(tmp_path: Path, name: str = "run") -> dict:
    return json.loads((tmp_path / name / "summary.json").read_text())


@pytest.fixture(autouse=True)
def _few_threads():
    import torch

    torch.set_num_threads(2)


@pytest.fixture(scope="module")
def one_thread_runs():
    """run.py subprocesses on one thread: on a shared 2-core machine two OpenMP threads spin-wait for each
    other and a run takes several times as long."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OMP_NUM_THREADS", "1")
        yield


@pytest.fixture
def read_only_dir(tmp_path):
    """A directory nothing can be written into: one with mode 0o555, or for root, whom modes do not stop,
    /sys (sysfs refuses new files to everyone); skipped where neither refuses a write."""
    locked = tmp_path / "read-only"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        for place in (locked, Path("/sys")):
            probe = place / f".probe-{os.getpid()}"
            try:
                probe.mkdir()
            except OSError:
                yield place
                return
            probe.rmdir()
        pytest.skip("no directory here refuses a write (neither a 0o555 one nor /sys)")
    finally:
        locked.chmod(0o755)  # so that pytest can clean tmp_path up


def write_image_folder(root: Path, classes: int = 2, train: int = 10, test: int = 4, size: int = 8) -> None:
    """train/<class>/*.png and test/<class>/*.png of random pixels: an image folder for a run to read."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, count in (("train", train), ("test", test)):
        for c in range(classes):
            folder = root / split / f"class{c}"
            folder.mkdir(parents=True)
            for i in range(count):
                pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"{i}.png")
