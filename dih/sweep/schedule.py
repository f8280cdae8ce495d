"""A sweep's plan as a cluster schedule: one job per teacher-side artifact the store lacks, then one per run,
each waiting on exactly the jobs that build what it reads (DESIGN.md: no job holds a GPU while it waits).

The jobs are ``run.py`` runs: a teacher-side job is a run of the sweep that needs the artifact, cut after the
stage that builds it (``stage.until=``), so what it builds is what the run would have built. Nothing here
talks to a cluster; dih/sweep/launch.py submits the schedule.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from dih.plan.chain import Planned

# The stage.until cut that builds each kind of planned teacher-side stage; an assistant's cohort cache is
# built by its assistant's job, just before the assistant.
BUILT_BY = {
    "teacher": "teacher",
    "heads": "heads",
    "hint": "hint",
    "assistant_cohort": "assistant",
    "assistant": "assistant",
    "cohort": "cohort",
}


@dataclass
class Job:
    """One job: what it runs, where it writes, the artifacts it builds and the jobs it waits for."""

    role: str  # a BUILT_BY cut (teacher, heads, hint, assistant, cohort) or "run"
    overrides: list[str]
    run_dir: Path
    builds: list[str]  # keys of the artifacts this job builds (empty: it reuses everything)
    needs: list[int] = field(default_factory=list)  # positions in the schedule of the jobs it waits for
    phase: int = 1

    @property
    def label(self) -> str:
        return self.role if self.role != "run" else f"run {self.run_dir.name}"


def schedule(
    runs: list[tuple[list[str], Path]],
    plans: list[list[Planned]],
    in_store: Callable[[str], bool],
    build_dir: Path,
) -> list[Job]:
    """The jobs of a sweep whose runs are ``(overrides, run directory)`` with these plans: every artifact
    the store lacks is built by exactly one job, and a job comes after every job it waits for."""
    jobs: list[Job] = []
    builder: dict[str, int] = {}  # artifact key -> the job that builds it

    def add(job: Job, planned: list[Planned]) -> None:
        needed = {builder[p.spec.key] for p in planned if p.spec.key in builder}
        job.needs = sorted(needed)
        job.phase = 1 + max((jobs[i].phase for i in job.needs), default=0)
        for key in job.builds:
            builder[key] = len(jobs)
        jobs.append(job)

    for (overrides, run_dir), planned in zip(runs, plans, strict=True):
        for i, p in enumerate(planned[:-1]):
            if in_store(p.spec.key) or p.spec.key in builder:
                continue
            cut = BUILT_BY[p.name]
            upto = max(j for j, q in enumerate(planned[:-1]) if BUILT_BY[q.name] == cut) + 1
            builds = [
                q.spec.key for q in planned[i:upto] if BUILT_BY[q.name] == cut and not in_store(q.spec.key)
            ]
            job_dir = build_dir / p.spec.key
            job = Job(cut, [*overrides, f"stage.until={cut}", f"hydra.run.dir={job_dir}"], job_dir, builds)
            add(job, planned[:i])
        final = planned[-1].spec.key
        builds = [] if in_store(final) or final in builder else [final]
        add(Job("run", [*overrides, f"hydra.run.dir={run_dir}"], run_dir, builds), planned)
    return jobs


def phases(jobs: list[Job]) -> list[Counter]:
    """Per phase (a job's phase is one more than the latest phase it waits for), its jobs by role."""
    counts = [Counter() for _ in range(max((j.phase for j in jobs), default=0))]
    for job in jobs:
        counts[job.phase - 1][job.role] += 1
    return counts


def arrays(jobs: list[Job]) -> list[list[int]]:
    """The jobs grouped for submission as job arrays: same phase, same role kind, same jobs waited for."""
    groups: dict[tuple, list[int]] = {}
    for i, job in enumerate(jobs):
        groups.setdefault((job.phase, job.role, tuple(job.needs)), []).append(i)
    return sorted(groups.values(), key=lambda group: (jobs[group[0]].phase, group[0]))
