"""Several runs per GPU (dih/sweep/pack.py): the schedule's run jobs packed N to a job without mixing jobs
that wait for different jobs; each run its own process on its share of the cores; a packed sweep here and on
the real local Slurm where one run fails at run time and its siblings finish with their summaries."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import HANG_S, ROOT, TINY

from dih.config.sweep_file import load
from dih.errors import UserError
from dih.sweep.launch import ordered_runs
from dih.sweep.pack import packs, run_env, threads_each
from dih.sweep.schedule import Job, arrays, schedule


def job(role: str, needs: list[int], phase: int, name: str) -> Job:
    return Job(role, [f"x={name}"], Path(name), [], needs, phase)


# a teacher, five runs needing nothing, three needing the teacher, two needing the teacher and its heads
JOBS = [
    job("teacher", [], 1, "t"),
    *(job("run", [], 1, f"ce{i}") for i in range(5)),
    job("heads", [0], 2, "h"),
    *(job("run", [0], 2, f"kd{i}") for i in range(3)),
    *(job("run", [0, 6], 3, f"dih{i}") for i in range(2)),
]


def names(tasks) -> list[list[list[str]]]:
    return [[[str(JOBS[i].run_dir) for i in task] for task in group] for group in tasks]


def test_runs_are_packed_n_per_job_with_a_remainder_and_never_across_dependencies():
    assert names(packs(JOBS, 2)) == [
        [["t"]],
        [["ce0", "ce1"], ["ce2", "ce3"], ["ce4"]],
        [["h"]],
        [["kd0", "kd1"], ["kd2"]],
        [["dih0", "dih1"]],
    ]
    assert names(packs(JOBS, 4))[1] == [["ce0", "ce1", "ce2", "ce3"], ["ce4"]]
    for n in (1, 2, 3, 8):
        tasks = packs(JOBS, n)
        assert sorted(i for group in tasks for task in group for i in task) == list(range(len(JOBS)))
        for task in (t for group in tasks for t in group):
            assert len(task) <= n
            assert len({(JOBS[i].phase, JOBS[i].role, tuple(JOBS[i].needs)) for i in task}) == 1
            assert len(task) == 1 or JOBS[task[0]].role == "run", "teacher-side jobs are not packed"
    assert packs(JOBS, 1) == [[[i] for i in group] for group in arrays(JOBS)]
    with pytest.raises(ValueError):
        packs(JOBS, 0)


def test_a_real_sweeps_packs_keep_its_dependencies(tmp_path):
    runs = ordered_runs(load(ROOT / "multirun_sweeps" / "laptop.yaml"), tmp_path, [], device="cpu")
    jobs = schedule([(o, d) for o, d, _, _ in runs], [p for _, _, p, _ in runs], lambda k: False, tmp_path)
    tasks = [t for group in packs(jobs, 4) for t in group]
    held = [[jobs[i].run_dir.name.split("_")[1] for i in t] for t in tasks if jobs[t[0]].role == "run"]
    assert held == [["ce", "ce"], ["kd", "kd"], ["dih", "dih"]]  # the three methods wait for different jobs


def test_each_packed_process_gets_its_share_of_the_cores(monkeypatch):
    assert threads_each(4, cpus=8) == 2 and threads_each(3, cpus=8) == 2
    assert threads_each(8, cpus=2) == 1 and threads_each(1, cpus=16) == 16
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("MKL_NUM_THREADS", raising=False)
    monkeypatch.setattr("dih.sweep.pack.cpus_here", lambda: 8)
    assert run_env(4)["OMP_NUM_THREADS"] == "2" and run_env(4)["MKL_NUM_THREADS"] == "2"
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert run_env(4)["OMP_NUM_THREADS"] == "3", "a thread count the user set is kept"


@pytest.mark.parametrize("key", ["+hydra.launcher.runs_per_gpu=2", "hydra.launcher.runs_per_gpu=2"])
def test_the_launcher_setting_is_refused_with_the_way_to_pack(key):
    from dih.cli import check_command_line

    with pytest.raises(UserError, match=r"Unknown key hydra.launcher.runs_per_gpu.*--runs-per-gpu N"):
        check_command_line(["--multirun", "hydra/launcher=slurm", "experiment=smoke", key])


def test_runs_per_gpu_is_refused_with_a_launcher_that_cannot_pack(tmp_path):
    proc = sweep_command(tmp_path, "hydra/launcher=local", per_gpu=2, dry_run=True)
    assert proc.returncode == 2 and "hydra/launcher=local cannot pack runs" in proc.stderr, proc.stderr


# ---- a packed sweep, one run failing at run time ---------------------------------------------------------

# The first grid's run diverges (a learning rate that makes its loss infinite: the config check passes it,
# the run fails after it started); packed two per job, it shares a job with a CE run that must finish.
SWEEP = """\
name: packed
overrides: [{tiny}]
grids:
  - method: [ce]
    seed: [3]
    trainer.lr: [1.0e30]
  - method: [ce, kd]
    seed: [1, 2]
"""


def sweep_command(tmp_path, *extra: str, per_gpu: int, dry_run: bool = False) -> subprocess.CompletedProcess:
    path = tmp_path / "packed.yaml"
    path.write_text(SWEEP.format(tiny=", ".join(TINY)))
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "dih.sweep",
            str(path),
            "--root",
            str(tmp_path / "multirun"),
            "--runs-per-gpu",
            str(per_gpu),
            *(["--dry-run"] if dry_run else []),
            f"artifacts.root={tmp_path / 'artifacts'}",
            *extra,
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=HANG_S,
    )


def outcome(sweep_dir: Path) -> dict[str, dict]:
    """Each student run's directory name (method and seed) -> its summary, or its failed.json."""
    result = {}
    for run_dir in sorted(sweep_dir.glob("grid*/*")):
        parts = run_dir.name.split("_")  # 0_ce_res14_res8_s3 -> ce3
        key = parts[1] + parts[-1][1:]
        done, failed = run_dir / "summary.json", run_dir / "failed.json"
        result[key] = {"summary": json.loads(done.read_text())} if done.exists() else {
            "failed": json.loads(failed.read_text()) if failed.exists() else None
        }
        assert (run_dir / "output.log").exists() and (run_dir / "run.log").exists(), run_dir
    return result


@pytest.mark.slow
def test_packed_sweep_here_one_failing_run_fails_only_itself(tmp_path, one_thread_runs):
    dry = sweep_command(tmp_path, per_gpu=2, dry_run=True)
    assert dry.returncode == 0, dry.stderr
    assert "6 jobs, run here 2 at a time in dependency order" in dry.stdout, dry.stdout
    assert not (tmp_path / "multirun" / "packed").exists()

    proc = sweep_command(tmp_path, per_gpu=2)
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "1 of 6 jobs failed or could not start" in proc.stderr, proc.stderr
    runs = outcome(tmp_path / "multirun" / "packed")
    assert sorted(runs) == ["ce1", "ce2", "ce3", "kd1", "kd2"]
    assert "loss became" in runs["ce3"]["failed"]["error"], runs
    for name in ("ce1", "ce2", "kd1", "kd2"):
        assert runs[name]["summary"]["stages"]["student"]["reused"] is False, name
    teacher = [runs[k]["summary"]["stages"]["teacher"] for k in ("kd1", "kd2")]
    assert all(t["reused"] for t in teacher), "the teacher was built by its own job, before its students"

    # run again: the finished runs are cheap (their students come from the store); the bad one fails again
    again = sweep_command(tmp_path, per_gpu=2)
    assert again.returncode == 1, again.stdout[-3000:] + again.stderr[-3000:]
    runs = outcome(tmp_path / "multirun" / "packed")
    for name in ("ce1", "ce2", "kd1", "kd2"):
        assert runs[name]["summary"]["stages"]["student"]["reused"] is True, name


@pytest.mark.slow
@pytest.mark.slurm
def test_packed_slurm_job_with_a_failing_run_leaves_its_sibling_finished(tmp_path):
    from test_slurm import FINAL, LAUNCHER, slurm_missing, wait_for

    if slurm_missing():
        pytest.skip(slurm_missing())
    proc = sweep_command(tmp_path, *LAUNCHER, "hydra.launcher.cpus_per_task=2", per_gpu=2)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "runs packed up to 2 per job: 5 runs in 3 jobs (2, 1, 2 runs each" in proc.stdout, proc.stdout
    schedule = json.loads((tmp_path / "multirun" / "packed" / "schedule.json").read_text())
    ids = sorted({j["job_id"] for j in schedule})
    jobs = wait_for(ids, lambda jobs: all(jobs[j]["state"] in FINAL for j in ids))

    runs = {Path(j["run_dir"]).name: j for j in schedule if j["role"] == "run"}
    failing = next(j for name, j in runs.items() if name.endswith("_ce_res14_res8_s3"))
    siblings = [j for j in runs.values() if j["job_id"] == failing["job_id"]]
    assert len(siblings) == 2 and sorted(failing["packed"]) == sorted(j["run_dir"] for j in siblings)
    assert jobs[failing["job_id"]]["state"] == "FAILED", jobs
    assert {jobs[j]["state"] for j in ids if j != failing["job_id"]} == {"COMPLETED"}, jobs
    (sibling,) = [j for j in siblings if j is not failing]
    assert (Path(sibling["run_dir"]) / "summary.json").exists(), "the failing run's sibling finished"
    assert (Path(failing["run_dir"]) / "failed.json").exists()
    assert len({j["job_id"] for j in runs.values()}) == 3, "five runs in three jobs"
    outcome(tmp_path / "multirun" / "packed")
    teacher = next(j for j in schedule if j["role"] == "teacher")
    for j in runs.values():
        if "_kd_" in j["run_dir"]:
            assert j["waits_for"] == [teacher["job_id"]]
            assert jobs[j["job_id"]]["start"] >= jobs[teacher["job_id"]]["end"]

    # Slurm requeues the finished packed job of the two KD runs (as after a preemption): both run again, and
    # reuse their students from the store instead of training them again
    (kd_job,) = {j["job_id"] for j in runs.values() if "_kd_" in j["run_dir"]}
    before = jobs[kd_job]["end"]
    requeue = subprocess.run(["scontrol", "requeue", kd_job], capture_output=True, text=True, timeout=HANG_S)
    assert requeue.returncode == 0, requeue.stderr
    again = wait_for([kd_job], lambda jobs: jobs[kd_job]["state"] in FINAL and jobs[kd_job]["end"] != before)
    assert again[kd_job]["state"] == "COMPLETED", again
    for j in runs.values():
        if "_kd_" in j["run_dir"]:
            summary = json.loads((Path(j["run_dir"]) / "summary.json").read_text())
            assert summary["stages"]["student"]["reused"] is True, j["run_dir"]


def test_a_requeued_packed_task_runs_the_same_runs_again():
    """submitit's checkpoint (a time limit, a preemption) resubmits the task with all its runs: the finished
    ones reuse their students from the store (the local packed sweep's second pass shows it), the others
    resume."""
    from dih.sweep.pack import PackedRunPy

    task = PackedRunPy("/somewhere")
    runs = [(["seed=1", "hydra.run.dir=/a"], "/a"), (["seed=2", "hydra.run.dir=/b"], "/b")]
    again = task.checkpoint(runs)
    assert again.function is task and again.args == (runs,)
