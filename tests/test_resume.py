"""Exact resume after a SIGKILL for every kind of stage after the teacher (test_pipeline.py covers the
teacher): the heads, FitNets' hint stage, a KD student, CRD's student (its loss keeps memory banks) and a
student that reads the cohort cache. Each is built once straight through and once killed mid-stage and
started again; both artifacts must hold identical tensors, and the history must run 1..N.

To keep this within minutes on two CPU cores, the teacher is trained once for the module, and the killed
run's store starts with the straight run's upstream artifacts (teacher, cohort cache), which their content
keys make it reuse; so only the stage under test (and, for FitNets, the student after it) trains twice.

Only the CLI's contract is used: run.py overrides, artifact directories by prefix, ``work/checkpoint.pt``,
``payload.pt``, ``meta.json``, ``metrics.jsonl``.
"""

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
from conftest import HANG_S, run_args, run_cli

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread_runs")]

EPOCHS = 6
# Long enough that the kill (right after epoch 1's checkpoint) lands mid-stage; the rate drops mid-way.
# bf16 autocast of the teacher side (the default on CPU) is emulated on this kind of CPU and several times
# slower than fp32; resuming does not depend on it, so the teacher side runs in fp32 here.
TRAIN = [
    f"trainer.epochs={EPOCHS}",
    "trainer.milestones=[3]",
    f"trainer.hint_epochs={EPOCHS}",
    "teacher_side.bf16=false",
]

CASES = {
    "heads": ("heads", ["method=dih", "stage=heads"]),
    "fitnets-hint": ("hint", ["method=fitnets"]),
    "kd-student": ("student", ["method=kd"]),
    "crd-student": ("student", ["method=crd"]),
    "cached-kd-student": ("student", ["method=kd", "teacher_side.cache=true"]),
}


@pytest.fixture(scope="module")
def teacher(tmp_path_factory) -> Path:
    """One teacher artifact for the module, trained with the same recipe as the stages under test; copied
    into each store, where its content key makes the runs reuse it."""
    root = tmp_path_factory.mktemp("teacher")
    run_cli(root, "stage=teacher", *TRAIN)
    (artifact,) = (root / "artifacts").glob("teacher-*")
    assert (artifact / "meta.json").exists()
    return artifact


def new_store(path: Path, *artifacts: Path) -> Path:
    """A store under ``path`` that starts with copies of ``artifacts``."""
    for artifact in artifacts:
        shutil.copytree(artifact, path / "artifacts" / artifact.name)
    return path


def run_killed(path: Path, prefix: str, overrides: list[str]) -> Path:
    """Start run.py and SIGKILL it as soon as a ``<prefix>-*`` stage has written its first checkpoint;
    return that stage's artifact directory (still incomplete)."""
    path.mkdir(parents=True, exist_ok=True)
    args = run_args(path, *overrides, name="killed")
    log = path / "killed.log"
    with log.open("w") as out:
        proc = subprocess.Popen(args, cwd=path, stdout=out, stderr=subprocess.STDOUT)
        checkpoints: list[Path] = []
        deadline = time.time() + HANG_S
        while proc.poll() is None and time.time() < deadline:
            checkpoints = list((path / "artifacts").glob(f"{prefix}-*/work/checkpoint.pt"))
            if checkpoints:
                break
            time.sleep(0.01)
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert checkpoints, f"no {prefix} checkpoint before the run ended:\n{log.read_text()[-3000:]}"
    artifact = checkpoints[0].parents[1]
    assert not (artifact / "meta.json").exists(), "killed too late to test resume"
    return artifact


def leaves(obj, prefix: str = "") -> dict:
    """Every leaf of a nested payload (dicts, lists, tuples) by its path."""
    if isinstance(obj, dict):
        return {k: v for key, value in obj.items() for k, v in leaves(value, f"{prefix}/{key}").items()}
    if isinstance(obj, list | tuple):
        return {k: v for i, value in enumerate(obj) for k, v in leaves(value, f"{prefix}[{i}]").items()}
    return {prefix: obj}


def assert_same_payload(got_dir: Path, want_dir: Path) -> None:
    got = leaves(torch.load(got_dir / "payload.pt", weights_only=True))
    want = leaves(torch.load(want_dir / "payload.pt", weights_only=True))
    assert got.keys() == want.keys()
    tensors = [name for name, value in want.items() if isinstance(value, torch.Tensor)]
    assert tensors, "the payload holds no tensors"
    for name, value in want.items():
        if isinstance(value, torch.Tensor):
            assert torch.equal(got[name], value), f"{name} differs after resume"
        else:
            assert got[name] == value, name


def epochs(metrics: Path, stage: str | None = None) -> list[int]:
    lines = [json.loads(x) for x in metrics.read_text().splitlines()]
    return [h["epoch"] for h in lines if stage is None or h["stage"] == stage]


@pytest.mark.parametrize("case", list(CASES))
def test_killed_stage_resumes_to_identical_payload(tmp_path, teacher, case):
    prefix, method = CASES[case]
    overrides = [*method, *TRAIN]

    straight = new_store(tmp_path / "straight", teacher)
    run_cli(straight, *overrides)
    (reference,) = (straight / "artifacts").glob(f"{prefix}-*")
    assert (reference / "meta.json").exists()

    upstream = [
        meta.parent
        for meta in (straight / "artifacts").glob("*/meta.json")
        if not meta.parent.name.startswith((f"{prefix}-", "student-"))
    ]
    if "teacher_side.cache=true" in method:
        # The cache is an artifact of its own, built before the student; the kill is to hit the student.
        assert [a.name for a in upstream if a.name.startswith("cohort-")], "no cohort cache was built"
    killed = new_store(tmp_path / "killed", *upstream)
    artifact = run_killed(killed, prefix, overrides)
    assert artifact.name == reference.name, "the same settings give the same key"

    run_cli(killed, *overrides, name="resumed")
    assert (artifact / "meta.json").exists()
    assert_same_payload(artifact, reference)
    assert epochs(artifact / "metrics.jsonl") == list(range(1, EPOCHS + 1))
    # The rerun trained only the epochs after the checkpoint: it resumed rather than started over.
    trained = epochs(killed / "resumed" / "metrics.jsonl", prefix)
    assert trained and trained[0] > 1 and trained == list(range(trained[0], EPOCHS + 1)), trained
