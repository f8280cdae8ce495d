"""Several runs per GPU: the schedule's run jobs packed N to a job, each run its own ``run.py`` process.

One small run cannot fill a GPU (issue 20: on an H200, 4 res8 CE runs at once gave 2.7x one run's
throughput, 8 at once 4.5x), so ``python -m dih.sweep SWEEP --runs-per-gpu N`` puts N runs that wait for the
same jobs into one job: on Slurm one array task (:class:`PackedRunPy`), here N processes at a time
(:func:`run_here`). Each run keeps its own process, run directory, ``run.log`` and failure: a job's runs all
finish before it reports the ones that failed. Teacher-side jobs are not packed (one job per artifact, as
before). Each process gets its share of the job's cores (:func:`threads_each`).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

# the schedule imports the planner, and torch with it: dih.sweep answers a bad setting without them
if TYPE_CHECKING:
    from dih.sweep.schedule import Job

RUN_PY = Path(__file__).resolve().parents[2] / "run.py"
OUTPUT = "output.log"  # each packed run's stdout and stderr, in its run directory


def packs(jobs: list[Job], per_job: int) -> list[list[list[int]]]:
    """Per Slurm array (same phase, role and jobs waited for), its tasks: the run jobs ``per_job`` to a task
    (the last one the remainder), every other job alone. Runs with different dependencies never share."""
    from dih.sweep.schedule import arrays

    if per_job < 1:
        raise ValueError(f"runs per job must be at least 1, not {per_job}")
    result = []
    for group in arrays(jobs):
        size = per_job if jobs[group[0]].role == "run" else 1
        result.append([group[i : i + size] for i in range(0, len(group), size)])
    return result


def cpus_here() -> int:
    """The cores this process may use: its CPU affinity (Slurm's allocation inside a job), or
    ``SLURM_CPUS_PER_TASK`` where that is fewer."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    slurm = os.environ.get("SLURM_CPUS_PER_TASK", "")
    return min(cpus, int(slurm)) if slurm.isdigit() and int(slurm) > 0 else cpus


def threads_each(together: int, cpus: int | None = None) -> int:
    """Torch/OpenMP threads for each of ``together`` processes sharing ``cpus`` cores: an equal share, at
    least one (N processes each spinning up every core's worth of threads slow each other down)."""
    return max(1, (cpus if cpus is not None else cpus_here()) // max(1, together))


def run_env(together: int) -> dict[str, str]:
    """The environment of one of ``together`` run processes: ``OMP_NUM_THREADS`` (torch's intra-op
    threads) and ``MKL_NUM_THREADS`` set to its share of the cores, unless the caller set them."""
    env = dict(os.environ)
    share = str(threads_each(together))
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env.setdefault(name, share)
    return env


def start(overrides: list[str], run_dir: Path, cwd: str, together: int) -> subprocess.Popen:
    """``run.py overrides`` as its own process, its output in ``run_dir/output.log``."""
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / OUTPUT, "ab") as out:
        return subprocess.Popen(
            [sys.executable, str(RUN_PY), *overrides],
            cwd=cwd,
            env=run_env(together),
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def tail(path: Path, lines: int = 5) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no output)"


class PackedRunPy:
    """A Slurm job's task holding several runs: each ``run.py`` its own process at once, on its share of the
    job's cores; it waits for all of them and fails (naming the failed runs) only once every one has ended,
    so one run failing leaves its siblings finished. On a time limit or preemption submitit requeues the task
    (``checkpoint``): every run starts again, the finished ones reuse their final artifact from the store and
    the others resume their stage from its last checkpoint."""

    def __init__(self, cwd: str):
        self.cwd = cwd

    def __call__(self, runs: list[tuple[list[str], str]]) -> None:
        procs = []
        for overrides, run_dir in runs:
            procs.append((run_dir, start(overrides, Path(run_dir), self.cwd, len(runs))))
            print(f"started {run_dir} (output in {Path(run_dir) / OUTPUT})", flush=True)
        failed = []
        for run_dir, proc in procs:
            code = proc.wait()
            print(f"{'finished' if code == 0 else f'failed (exit {code})'}: {run_dir}", flush=True)
            if code != 0:
                failed.append(run_dir)
                print(tail(Path(run_dir) / OUTPUT), file=sys.stderr, flush=True)
        if failed:
            raise RuntimeError(
                f"{len(failed)} of {len(runs)} runs in this job failed ({', '.join(failed)}); the others "
                "finished. Each run's output is in its directory's output.log."
            )

    def checkpoint(self, runs: list[tuple[list[str], str]]):
        import submitit

        return submitit.helpers.DelayedSubmission(self, runs)


def run_here(jobs: list[Job], together: int, cwd: str, poll_s: float = 0.2) -> int:
    """Run a schedule on this machine, ``together`` jobs at a time in dependency order: a job starts once
    every job it waits for has succeeded (the teacher side first, then the students side by side); a job whose
    builder failed is not started. Each is its own process with its own run directory and output.log, on its
    share of the cores. Returns 0 when every job succeeded, else 1 (after all that could run have ended)."""
    state: dict[int, str] = {}  # job -> "ok", "failed", "skipped"
    running: dict[int, subprocess.Popen] = {}
    total = len(jobs)
    while len(state) < total:
        for i, job in enumerate(jobs):
            if i in state or i in running:
                continue
            if any(state.get(n) in ("failed", "skipped") for n in job.needs):
                state[i] = "skipped"
                waited = f"[{len(state)}/{total}] not started, a job it waits for failed"
                print(f"{waited}: {job.run_dir}", flush=True)
            elif len(running) < together and all(state.get(n) == "ok" for n in job.needs):
                running[i] = start(job.overrides, job.run_dir, cwd, together)
                print(f"started {job.label} in {job.run_dir}", flush=True)
        for i, proc in list(running.items()):
            code = proc.poll()
            if code is None:
                continue
            del running[i]
            state[i] = "ok" if code == 0 else "failed"
            how = "finished"
            if code != 0:
                how = f"failed (exit {code}); its output ends:\n{tail(jobs[i].run_dir / OUTPUT)}\n"
            print(f"[{len(state)}/{total}] {how}: {jobs[i].run_dir}", flush=True)
        if running and len(state) < total:
            time.sleep(poll_s)
    bad = [jobs[i].run_dir for i, s in sorted(state.items()) if s != "ok"]
    if bad:
        print(
            f"{len(bad)} of {total} jobs failed or could not start: " + ", ".join(map(str, bad)),
            file=sys.stderr,
        )
    return 1 if bad else 0
