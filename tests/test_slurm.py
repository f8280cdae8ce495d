"""The Slurm path for real: a small grid through Hydra's submitit launcher on the local one-node cluster
(.ci/slurm/up.sh starts it), and a running job requeued by Slurm resumes instead of restarting."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from datetime import datetime
from pathlib import Path

import pytest
import torch
from conftest import HANG_S, ROOT, TINY, run_cli


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
    "hydra.launcher.timeout_min=240",  # a limit no tiny job meets, however busy the machine
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
    out, _ = proc.communicate(timeout=HANG_S)
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


def scontrol(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["scontrol", *args], capture_output=True, text=True, timeout=HANG_S)


def job_id_of(name: str, proc: subprocess.Popen) -> str:
    """The id of the job called ``name`` once Slurm lists it."""
    deadline = time.time() + HANG_S
    while time.time() < deadline and proc.poll() is None:
        out = subprocess.run(
            ["squeue", "-h", "-n", name, "-o", "%i"], capture_output=True, text=True, timeout=HANG_S
        ).stdout.split()
        if out:
            return out[0]
        time.sleep(0.1)
    raise AssertionError(f"the job {name} was never queued (the launcher exited {proc.poll()})")


def job_python(folder) -> int | None:
    """The pid of the Python process a submitit job in ``folder`` runs on this node (not its srun)."""
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            argv = cmdline.read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        if "submitit.core._submit" in argv and str(folder) in " ".join(argv) and "srun" not in argv[0]:
            return int(cmdline.parent.name)
    return None


def test_requeued_job_resumes_where_it_was(tmp_path):
    """A job Slurm requeues runs again, resumes from its checkpoint and ends identical to an uninterrupted
    run. The job is stopped (SIGSTOP) the moment its first checkpoint is seen, requeued, and killed as Slurm
    would kill it after the grace that follows SIGTERM (submitit ignores SIGTERM): it cannot run on to its
    end meanwhile, however loaded the machine, so the run can be tiny. (A res14 teacher of 20 epochs, long
    enough to outlast that grace, missed a fixed 600 s timeout in its reference run on a busy machine.)"""
    epochs = 6
    settings = ["stage=teacher", "teacher=res8", f"trainer.epochs={epochs}", "trainer.milestones=[4]"]
    run_cli(tmp_path / "straight", *settings)
    (reference,) = (tmp_path / "straight" / "artifacts").glob("teacher-*")

    job_name = f"dih-requeue-{uuid.uuid4().hex[:8]}"
    proc = multirun(tmp_path, *settings, "hydra.launcher.cpus_per_task=2", f"hydra.launcher.name={job_name}")
    job_id = job_id_of(job_name, proc)
    work = tmp_path / "artifacts" / reference.name / "work"
    deadline = time.time() + HANG_S
    while not (work / "checkpoint.pt").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.01)
    pid = job_python(tmp_path / "sweep" / ".submitit")
    assert pid is not None, "the job's Python process is running"
    os.kill(pid, signal.SIGSTOP)
    held = len(torch.load(work / "checkpoint.pt", weights_only=True)["history"])
    assert 1 <= held < epochs, "stopped before its end"
    requeue = scontrol("requeue", job_id)
    os.kill(pid, signal.SIGKILL)
    assert requeue.returncode == 0, requeue.stderr
    out, _ = proc.communicate(timeout=HANG_S)
    assert proc.returncode == 0, out[-4000:]

    assert not work.exists()
    logs = "".join(p.read_text() for p in (tmp_path / "sweep" / ".submitit").rglob("*.out"))
    resumed = [int(e) for e in re.findall(r"teacher: resuming after epoch (\d+) from", logs)]
    assert resumed == [held], f"resumed where it was stopped (after epoch {held}): {resumed}"
    history = (tmp_path / "artifacts" / reference.name / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(h)["epoch"] for h in history] == list(range(1, epochs + 1))
    got = torch.load(tmp_path / "artifacts" / reference.name / "payload.pt", weights_only=True)["model"]
    want = torch.load(reference / "payload.pt", weights_only=True)["model"]
    for name, tensor in want.items():
        assert torch.equal(got[name], tensor), name


TINY_SWEEP = [
    "dataset.image_size=16",
    "dataset.train_size=120",
    "dataset.test_size=50",
    "trainer.batch_size=32",
    "hydra.launcher.cpus_per_task=1",
]


def submit_sweep(tmp_path, *overrides: str, dry_run: bool = False) -> subprocess.CompletedProcess:
    """``python -m dih.sweep multirun_sweeps/laptop.yaml`` on the Slurm launcher, artifacts in tmp_path."""
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "dih.sweep",
            str(ROOT / "multirun_sweeps" / "laptop.yaml"),
            "--root",
            str(tmp_path / "multirun"),
            *(["--dry-run"] if dry_run else []),
            *LAUNCHER,
            *TINY_SWEEP,
            f"artifacts.root={tmp_path / 'artifacts'}",
            *overrides,
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=HANG_S,
    )


def accounting(job_ids: list[str]) -> dict[str, dict]:
    """sacct's state, start and end of each job (array tasks by their own ids)."""
    out = subprocess.run(
        [
            "sacct",
            "-n",
            "-X",
            "-P",
            "-j",
            ",".join(j.split("_")[0] for j in job_ids),
            "-o",
            "JobID,State,Start,End",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    ).stdout
    rows = (line.split("|") for line in out.splitlines() if line.strip())
    return {r[0]: {"state": r[1].split()[0], "start": r[2], "end": r[3]} for r in rows}


def wait_for(job_ids: list[str], done, timeout: float = HANG_S) -> dict[str, dict]:
    deadline = time.time() + timeout
    while time.time() < deadline:
        jobs = accounting(job_ids)
        if all(j in jobs for j in job_ids) and done(jobs):
            return jobs
        time.sleep(3)
    raise AssertionError(f"Slurm jobs did not get there in {timeout} s: {accounting(job_ids)}")


FINAL = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL"}


def test_sweep_is_submitted_in_dependency_order_and_no_job_waits_on_a_lock(tmp_path):
    """Teacher-side artifacts get their own jobs, each run waits (afterok) on exactly the jobs building what
    it reads: from sacct, no run starts before those jobs end, and no job's log shows a wait on a lock."""
    proc = submit_sweep(tmp_path)
    returned = time.time()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    schedule = json.loads((tmp_path / "multirun" / "laptop" / "schedule.json").read_text())
    by_role = sorted(j["role"] for j in schedule)
    assert by_role == ["heads", "run", "run", "run", "run", "run", "run", "teacher"], by_role
    ids = [j["job_id"] for j in schedule]
    jobs = wait_for(ids, lambda jobs: all(jobs[j]["state"] in FINAL for j in ids))
    assert {jobs[j]["state"] for j in ids} == {"COMPLETED"}, jobs
    # submitting returned without waiting for the jobs: before the last of them ended, by sacct's clock (not
    # a guess at how long submitting takes, which a busy machine stretches)
    last_end = max(datetime.fromisoformat(jobs[j]["end"]).timestamp() for j in ids)
    assert returned < last_end, "submitting returns without waiting for the jobs"

    teacher, heads = (next(j for j in schedule if j["role"] == r) for r in ("teacher", "heads"))
    assert heads["waits_for"] == [teacher["job_id"]]
    for job in schedule:
        for needed in job["waits_for"]:
            assert jobs[job["job_id"]]["start"] >= jobs[needed]["end"], (job, jobs[needed])
    waits = {(j["run_dir"].rsplit("_", 4)[1]): j["waits_for"] for j in schedule if j["role"] == "run"}
    assert waits == {"ce": [], "kd": [teacher["job_id"]], "dih": [teacher["job_id"], heads["job_id"]]}

    logs = [p.read_text() for p in (tmp_path / "multirun" / "laptop" / ".submitit").rglob("*.out")]
    assert len(logs) == len(schedule)
    assert not [log for log in logs if "waiting for" in log], "a job waited on a lock"
    summaries = [json.loads(p.read_text()) for p in (tmp_path / "multirun" / "laptop").rglob("summary.json")]
    students = [s for s in summaries if "student" in s["stages"]]
    assert len(students) == 6 and all(s["stages"]["student"]["reused"] is False for s in students)
    assert all(s["stages"]["teacher"]["reused"] for s in students if "teacher" in s["stages"])

    again = submit_sweep(tmp_path, dry_run=True)
    assert again.returncode == 0, again.stderr
    assert "2 distinct teacher-side artifacts, 2 already in" in again.stdout
    assert "teacher" not in again.stdout.split("(not resubmitted)")[1], again.stdout


def test_failed_teacher_leaves_its_students_pending_with_the_reason(tmp_path):
    proc = submit_sweep(tmp_path, "trainer.lr=1e30")  # the teacher's loss is not finite: its job fails
    assert proc.returncode == 0, proc.stdout + proc.stderr
    schedule = json.loads((tmp_path / "multirun" / "laptop" / "schedule.json").read_text())
    teacher = next(j["job_id"] for j in schedule if j["role"] == "teacher")
    waiting = [j["job_id"] for j in schedule if teacher in j["waits_for"]]
    try:
        wait_for([teacher], lambda jobs: jobs[teacher]["state"] in FINAL)
        deadline = time.time() + HANG_S
        while time.time() < deadline:
            queue = subprocess.run(
                ["squeue", "-h", "-r", "-j", ",".join(j.split("_")[0] for j in waiting), "-o", "%i %T %r"],
                capture_output=True,
                text=True,
                timeout=30,
            ).stdout.split("\n")
            reasons = {line.split()[2] for line in queue if line.strip()}
            if reasons == {"DependencyNeverSatisfied"}:
                break
            time.sleep(2)
        assert accounting([teacher])[teacher]["state"] == "FAILED"
        assert reasons == {"DependencyNeverSatisfied"}, queue
        # the heads and the four kd and dih runs wait, none of them ran; the two ce runs need no teacher
        assert sorted(line.split()[0] for line in queue if line.strip()) == sorted(waiting)
        assert len(waiting) == 5
    finally:
        subprocess.run(["scancel", *{j.split("_")[0] for j in waiting}], timeout=30)
