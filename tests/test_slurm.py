"""The Slurm path for real: a small grid through Hydra's submitit launcher on the local one-node cluster
(.ci/slurm/up.sh starts it), and a running job requeued by Slurm resumes instead of restarting."""

import json
import shutil
import subprocess
import sys
import time
import uuid

import pytest
import torch
from conftest import ROOT, TINY, run_cli


def slurm_missing() -> str | None:
    """Why Slurm cannot be used here, or None when a partition answers."""
    if shutil.which("sbatch") is None:
        return "no Slurm on this machine (start one with .ci/slurm/up.sh)"
    try:
        out = subprocess.run(["sinfo", "-h", "-o", "%P %a"], capture_output=True, text=True, timeout=15)
    except subprocess.TimeoutExpired:
        return "slurmctld does not answer"
    if out.returncode != 0 or "debug" not in out.stdout:
        return f"no usable 'debug' partition: {(out.stderr or out.stdout).strip()[:200]}"
    return None


pytestmark = [pytest.mark.slurm, pytest.mark.skipif(slurm_missing() is not None, reason=str(slurm_missing()))]

# The CI node has 2 CPUs, no GPU and 24 GB: ask for what it has.
LAUNCHER = [
    "hydra/launcher=slurm",
    "hydra.launcher.partition=debug",
    "hydra.launcher.gpus_per_node=0",
    "hydra.launcher.mem_gb=2",
    "hydra.launcher.timeout_min=20",
    "hydra.launcher.max_num_timeout=3",
]


def multirun(tmp_path, *overrides, name="sweep") -> subprocess.Popen:
    args = [
        sys.executable,
        str(ROOT / "run.py"),
        "--multirun",
        *LAUNCHER,
        *TINY,
        f"artifacts.root={tmp_path / 'artifacts'}",
        f"hydra.sweep.dir={tmp_path / name}",
        *overrides,
    ]
    return subprocess.Popen(args, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_grid_through_the_slurm_launcher(tmp_path):
    proc = multirun(tmp_path, "hydra.launcher.cpus_per_task=1", "method=kd,dih", "seed=30,50")
    out, _ = proc.communicate(timeout=900)
    assert proc.returncode == 0, out[-4000:]
    summaries = [json.loads(p.read_text()) for p in (tmp_path / "sweep").rglob("summary.json")]
    assert sorted((s["method"], s["seed"]) for s in summaries) == [
        ("dih", 30),
        ("dih", 50),
        ("kd", 30),
        ("kd", 50),
    ]
    assert all(0 <= s["test/acc_last"] <= 100 for s in summaries)
    teachers = [s["stages"]["teacher"] for s in summaries]
    assert len({t["key"] for t in teachers}) == 1 and sum(not t["reused"] for t in teachers) == 1
    assert list((tmp_path / "sweep" / ".submitit").iterdir()), "the jobs went through submitit"


def test_requeued_job_resumes_where_it_was(tmp_path):
    # Long enough (~1 s an epoch) that the job cannot finish within Slurm's grace period after SIGTERM.
    settings = [
        "stage=teacher",
        "trainer.epochs=20",
        "trainer.milestones=[15]",
        "dataset.image_size=32",
        "dataset.train_size=400",
    ]
    run_cli(tmp_path / "straight", *settings)
    (reference,) = (tmp_path / "straight" / "artifacts").glob("teacher-*")

    job_name = f"dih-requeue-{uuid.uuid4().hex[:8]}"
    proc = multirun(tmp_path, *settings, "hydra.launcher.cpus_per_task=2", f"hydra.launcher.name={job_name}")
    checkpoint = tmp_path / "artifacts" / reference.name / "work" / "checkpoint.pt"
    deadline = time.time() + 300
    while not checkpoint.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.1)
    assert checkpoint.exists(), "the job never checkpointed"
    job_id = subprocess.run(
        ["squeue", "-h", "-n", job_name, "-o", "%i"], capture_output=True, text=True, timeout=30
    ).stdout.split()[0]
    requeue = subprocess.run(["scontrol", "requeue", job_id], capture_output=True, text=True, timeout=30)
    assert requeue.returncode == 0, requeue.stderr
    out, _ = proc.communicate(timeout=900)
    assert proc.returncode == 0, out[-4000:]

    assert not (tmp_path / "artifacts" / reference.name / "work").exists()
    logs = "".join(p.read_text() for p in (tmp_path / "sweep" / ".submitit").rglob("*.out"))
    assert "resuming after epoch" in logs, "the requeued job resumed from its checkpoint"
    history = (tmp_path / "artifacts" / reference.name / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(h)["epoch"] for h in history] == list(range(1, 21))
    got = torch.load(tmp_path / "artifacts" / reference.name / "payload.pt", weights_only=True)["model"]
    want = torch.load(reference / "payload.pt", weights_only=True)["model"]
    for name, tensor in want.items():
        assert torch.equal(got[name], tensor), name


def test_submitted_sweep_returns_at_once_and_finishes_on_slurm(tmp_path):
    """``--submit`` hands the sweep driver to Slurm and returns; the grid then completes on the cluster."""
    tiny = [
        "dataset.image_size=16",
        "dataset.train_size=120",
        "dataset.test_size=50",
        "trainer.batch_size=32",
        f"artifacts.root={tmp_path / 'artifacts'}",
        "hydra.launcher.cpus_per_task=1",
    ]
    started = time.time()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "dih.sweep",
            str(ROOT / "multirun_sweeps" / "laptop.yaml"),
            "--submit",
            "--driver-partition=debug",
            "--root",
            str(tmp_path / "multirun"),
            *LAUNCHER,
            *tiny,
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "submitted the sweep driver as Slurm job" in proc.stdout
    assert time.time() - started < 60, "the submitting command does not wait for the grid"
    job_id = proc.stdout.split("Slurm job ")[1].split(";")[0]
    deadline = time.time() + 900
    while time.time() < deadline:
        queue = subprocess.run(["squeue", "-h", "-j", job_id], capture_output=True, text=True, timeout=30)
        if job_id not in queue.stdout:
            break
        time.sleep(2)
    summaries = list((tmp_path / "multirun" / "laptop").rglob("summary.json"))
    assert len(summaries) == 6, [p.parent.name for p in summaries]
