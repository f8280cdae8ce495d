"""Run a sweep definition from multirun_sweeps/.

    python -m dih.sweep multirun_sweeps/laptop.yaml                      # here, one run after another
    python -m dih.sweep multirun_sweeps/cifar100.yaml --dry-run hydra/launcher=slurm   # the schedule
    python -m dih.sweep multirun_sweeps/cifar100.yaml hydra/launcher=slurm hydra.launcher.partition=gpu

With a Slurm launcher (``hydra/launcher=slurm`` or the plugin's ``submitit_slurm``, every
``hydra.launcher.*`` setting honoured) the sweep's plan is its schedule (dih/sweep/schedule.py): the
teacher-side artifacts the store lacks are built by their own jobs, and every run is a job that waits (Slurm
``afterok``) on exactly the jobs that build what it reads, so no job holds a GPU while it waits on a lock, and
a failed teacher leaves its students pending (reason ``DependencyNeverSatisfied``) instead of running. The
command submits everything through submitit and returns; ``python -m dih.report`` works on the sweep directory
at any time. With any other launcher each grid becomes one Hydra multirun of run.py.

``--runs-per-gpu N`` packs the schedule's run jobs N to a job (dih/sweep/pack.py): on Slurm N runs that wait
for the same jobs share one array task (one GPU), each its own process; without a Slurm launcher the
schedule runs here, N processes at a time in dependency order.
"""

import argparse
import json
import subprocess
import sys
from pathlib import Path

from dih.config.compose import compose_run, launcher_config
from dih.config.sweep_file import expand, load, size
from dih.errors import UserError, command
from dih.sweep.pack import RUN_PY


def claim(sweep: dict, sweep_dir: Path, extra: list[str], path: Path) -> None:
    """Record which sweep a sweep directory holds (``sweep.json``: its definition and the command line's
    job settings), and refuse another sweep of the same name there once it holds runs: their run
    directories would be the same (named by method, models and seed) and their run.log files interleaved."""
    record = {
        "name": sweep["name"],
        "overrides": sweep["overrides"],
        "grids": sweep["grids"],
        "extra": [e for e in extra if not e.startswith(("hydra/", "hydra."))],
    }
    record = json.loads(json.dumps(record))
    target = sweep_dir / "sweep.json"
    if target.exists() and _held(target) != record and _has_runs(sweep_dir):
        raise UserError(
            f"{sweep_dir} holds the runs of another sweep named '{sweep['name']}' (defined in {target}, "
            f"with other grids, overrides or settings); give {path} another name: or use another --root."
        )
    from dih.store import atomic  # torch, loaded only once every run passed its check

    atomic.write_json(target, record)


def _held(target: Path):
    try:
        return json.loads(target.read_text())
    except (OSError, ValueError):
        return None


def _has_runs(sweep_dir: Path) -> bool:
    return (sweep_dir / "schedule.json").exists() or any(sweep_dir.glob("grid*/*"))


def commands(sweep: dict, root: Path, extra: list[str]) -> list[list[str]]:
    """One ``run.py --multirun`` command per grid, each in its own directory under ``root/<name>/``."""
    result = []
    for i, grid in enumerate(sweep["grids"]):
        axes = [f"{key}={','.join(str(v) for v in values)}" for key, values in grid.items()]
        sweep_dir = root / sweep["name"] / f"grid{i}"
        result.append(
            [
                sys.executable,
                str(RUN_PY),
                "--multirun",
                *sweep.get("overrides", []),
                *axes,
                f"hydra.sweep.dir={sweep_dir}",
                *extra,
            ]
        )
    return result


def run(cmds: list[list[str]], parallel: bool) -> int:
    """Run the grids' multiruns: side by side when a launcher sends the jobs elsewhere, else in turn."""
    if not parallel:
        return max(subprocess.run(cmd).returncode for cmd in cmds)
    procs = [subprocess.Popen(cmd) for cmd in cmds]
    return max(p.wait() for p in procs)


SLURM_LAUNCHER = "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"


def ordered_runs(
    sweep: dict, sweep_dir: Path, extra: list[str], device: str
) -> list[tuple[list[str], Path, object]]:
    """Every run of the sweep as ``(overrides, run directory, plan, config)``, composed and validated, then
    planned here (a bad one stops everything, naming the run; torch is imported only once all passed). The
    run directories are those Hydra's multirun would make; ``device=auto`` is pinned to the jobs' device,
    since the plan's keys (bf16 auto) depend on it."""
    job_extra = _job_extra(extra)
    composed = []
    for g, num, overrides in expand(sweep, job_extra):
        cfg = _naming(overrides, compose_run, overrides)
        if cfg.device == "auto":
            overrides.append(f"device={device}")
            cfg = _naming(overrides, compose_run, overrides)
        name = f"{num}_{cfg.method.name}_{cfg.teacher.name}_{cfg.student.name}_s{cfg.seed}"
        composed.append((overrides, sweep_dir / f"grid{g}" / name, cfg))
    from dih.plan.chain import plan_run

    return [(o, d, _naming(o, plan_run, cfg), cfg) for o, d, cfg in composed]


def _job_extra(extra: list[str]) -> list[str]:
    """The extra overrides a job sees: the launcher's settings are the submission's, not the run's."""
    return [e for e in extra if not e.startswith(("hydra/launcher=", "hydra.launcher."))]


def _naming(overrides: list[str], step, arg):
    """``step(arg)``, its UserError naming the run."""
    try:
        return step(arg)
    except UserError as exc:
        raise UserError(f"{str(exc).rstrip('.')} (in the run {' '.join(overrides)}).") from None


def check_runs(sweep: dict, extra: list[str]) -> None:
    """Every run of the sweep composed and validated before anything starts (a bad one stops the sweep,
    naming the run), as its multiruns will check them again; no torch is imported."""
    job_extra = _job_extra(extra)
    for run in expand(sweep, job_extra):
        _naming(run.overrides, compose_run, run.overrides)


def asks_for_gpus(launcher: dict) -> bool:
    return bool(
        launcher.get("gpus_per_node") or launcher.get("gpus_per_task") or "gpu" in str(launcher.get("gres"))
    )


class RunPy:
    """A Slurm job's task: ``run.py`` with one job's overrides, from where the sweep was submitted. On a
    time limit or preemption submitit requeues it (``checkpoint``) and the run resumes its stage."""

    def __init__(self, cwd: str):
        self.cwd = cwd

    def __call__(self, overrides: list[str]) -> None:
        subprocess.run([sys.executable, str(RUN_PY), *overrides], cwd=self.cwd, check=True)

    def checkpoint(self, overrides: list[str]):
        import submitit

        return submitit.helpers.DelayedSubmission(self, overrides)


def slurm_executor(launcher: dict):
    """submitit's Slurm executor set up from Hydra's launcher node exactly as hydra-submitit-launcher sets
    up its own: the queue fields by their names, every other field as ``slurm_<field>``."""
    import submitit
    from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
    from omegaconf import OmegaConf

    params = {k: v for k, v in launcher.items() if k != "_target_"}
    folder = params.pop("submitit_folder")
    executor = submitit.AutoExecutor(
        folder=folder, cluster="slurm", slurm_max_num_timeout=params.pop("max_num_timeout")
    )
    queue = set(OmegaConf.structured(BaseQueueConf).keys())
    executor.update_parameters(**{k if k in queue else f"slurm_{k}": v for k, v in params.items()})
    return executor


def planned_jobs(
    sweep: dict, sweep_dir: Path, extra: list[str], device: str, per_job: int = 1, show_packs: bool = True
):
    """The sweep's schedule (dih/sweep/schedule.py) and its tasks (dih/sweep/pack.py: run jobs ``per_job``
    to a task), with what it will do printed: the phases, and the packing when there is one."""
    runs = ordered_runs(sweep, sweep_dir, extra, device)
    from dih.store.artifacts import ArtifactStore  # after the runs passed: it loads torch
    from dih.sweep.pack import packs
    from dih.sweep.schedule import phases, schedule

    store = ArtifactStore(Path(runs[0][3].artifacts.root))
    upstream = {p.spec.key for _, _, planned, _ in runs for p in planned[:-1]}
    jobs = schedule(
        [(o, d) for o, d, _, _ in runs], [p for _, _, p, _ in runs], store.has, sweep_dir / ".teacher_side"
    )
    stored = sum(store.has(k) for k in upstream)
    print(
        f"sweep {sweep['name']}: {len(runs)} runs; {len(upstream)} distinct teacher-side artifacts, {stored} "
        f"already in {store.root} (not resubmitted)"
    )
    tasks = packs(jobs, per_job)
    for n, counts in enumerate(phases(jobs), 1):
        print(
            f"phase {n}: {sum(counts.values())} jobs ("
            + ", ".join(f"{r} {c}" for r, c in counts.items())
            + ")"
        )
    if per_job > 1 and show_packs:
        packed = [task for group in tasks for task in group if jobs[task[0]].role == "run"]
        print(
            f"runs packed up to {per_job} per job: {sum(map(len, packed))} runs in {len(packed)} jobs "
            f"({', '.join(str(len(t)) for t in packed)} runs each; only runs waiting for the same jobs "
            "share one)"
        )
        for task in packed:
            print("  one job: " + ", ".join(jobs[i].run_dir.name for i in task))
    return jobs, tasks


def submit_ordered(
    sweep: dict,
    root: Path,
    extra: list[str],
    launcher: dict,
    dry_run: bool,
    path: Path = Path("sweep"),
    per_job: int = 1,
) -> int:
    """Submit the sweep in dependency order: the teacher-side artifacts the store lacks first, then every
    run, each job with ``afterok`` on exactly the jobs that build what it reads; with ``per_job`` > 1 the
    runs that wait for the same jobs go ``per_job`` to a job (one array task). Returns at once."""
    sweep_dir = root / sweep["name"]
    device = "cuda" if asks_for_gpus(launcher) else "cpu"
    jobs, tasks = planned_jobs(sweep, sweep_dir, extra, device, per_job)
    count = sum(map(len, tasks))
    print(f"{count} jobs in {len(tasks)} Slurm arrays, each after exactly the jobs it needs (afterok)")
    if dry_run:
        return 0
    from dih.sweep.pack import PackedRunPy

    claim(sweep, sweep_dir, extra, path)
    executor = slurm_executor(launcher)
    named = any(e.startswith("hydra.launcher.name=") for e in [*sweep.get("overrides", []), *extra])
    extra_params = dict(launcher.get("additional_parameters") or {})
    task, packed_task, ids = RunPy(str(Path.cwd())), PackedRunPy(str(Path.cwd())), {}
    for group in tasks:
        first = jobs[group[0][0]]
        waits = list(dict.fromkeys(ids[n] for n in first.needs))  # packed builders would share an id
        dependency = ":".join(["afterok", *waits]) if waits else None
        if dependency and extra_params.get("dependency"):
            dependency = f"{extra_params['dependency']},{dependency}"
        params = {**extra_params, **({"dependency": dependency} if dependency else {})}
        executor.update_parameters(slurm_additional_parameters=params)
        if not named:
            executor.update_parameters(name=f"{sweep['name']}-{first.role}")
        if per_job > 1 and first.role == "run":
            args = [[(jobs[i].overrides, str(jobs[i].run_dir)) for i in t] for t in group]
            submitted = executor.map_array(packed_task, args)
        else:
            submitted = executor.map_array(task, [jobs[t[0]].overrides for t in group])
        ids.update({i: job.job_id for t, job in zip(group, submitted) for i in t})
    holding = {i: t for group in tasks for t in group for i in t}
    record = [
        {
            "job_id": ids[i],
            "role": job.role,
            "phase": job.phase,
            "builds": job.builds,
            "waits_for": [ids[n] for n in job.needs],
            "run_dir": str(job.run_dir),
            "overrides": job.overrides,
            # the runs (run directories) that share this job's Slurm job, itself included
            "packed": [str(jobs[k].run_dir) for k in holding[i]],
        }
        for i, job in enumerate(jobs)
    ]
    from dih.store import atomic

    atomic.write_json(sweep_dir / "schedule.json", record)
    print(f"submitted {count} jobs; the schedule is in {sweep_dir / 'schedule.json'}")
    print(f"follow them with: squeue --me; the results so far: python -m dih.report {sweep_dir}")
    return 0


def _at_least_one(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"--runs-per-gpu takes a whole number of at least 1, not '{text}'")
    return value


def run_packed_here(sweep: dict, root: Path, extra: list[str], settings: list[str], args) -> int:
    """The sweep's schedule run on this machine, ``--runs-per-gpu`` jobs at a time (dih/sweep/pack.py)."""
    chosen = [s for s in settings if s.startswith("hydra/launcher=")]
    if chosen:
        raise UserError(
            f"--runs-per-gpu runs the sweep's jobs here itself, or packs them on a Slurm launcher; "
            f"{chosen[-1]} cannot pack runs: drop it, or use hydra/launcher=slurm."
        )
    check_runs(sweep, extra)  # every run checked before torch is loaded to find the device
    from dih.device import planned_device_type

    sweep_dir = root / sweep["name"]
    device = planned_device_type("auto")
    jobs, _ = planned_jobs(sweep, sweep_dir, extra, device, args.runs_per_gpu, show_packs=False)
    print(f"{len(jobs)} jobs, run here {args.runs_per_gpu} at a time in dependency order on {device}")
    if args.dry_run:
        return 0
    claim(sweep, sweep_dir, extra, Path(args.sweep))
    from dih.sweep.pack import run_here

    return run_here(jobs, args.runs_per_gpu, str(Path.cwd()))


@command
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dih.sweep", description=__doc__.split("\n\n")[0])
    parser.add_argument("sweep", help="a sweep definition, e.g. multirun_sweeps/cifar100.yaml")
    parser.add_argument("--root", default="multirun", help="where sweep directories go (default: multirun)")
    parser.add_argument(
        "--dry-run", action="store_true", help="print what would run or be submitted, and stop"
    )
    parser.add_argument(
        "--runs-per-gpu",
        type=_at_least_one,
        default=1,
        metavar="N",
        help="pack runs N to a job: on Slurm N runs that wait for the same jobs share one job (one GPU), "
        "each its own process; without a Slurm launcher the sweep's jobs run here N at a time (default 1)",
    )
    args, extra = parser.parse_known_args(argv)
    sweep = load(Path(args.sweep))
    root = Path(args.root).absolute()
    settings = [*sweep.get("overrides", []), *extra]
    launcher = launcher_config(settings, root / sweep["name"])
    if launcher.get("_target_") == SLURM_LAUNCHER:
        return submit_ordered(sweep, root, extra, launcher, args.dry_run, Path(args.sweep), args.runs_per_gpu)
    if args.runs_per_gpu > 1:
        return run_packed_here(sweep, root, extra, settings, args)
    check_runs(sweep, extra)
    cmds = commands(sweep, root, extra)
    print(f"sweep {sweep['name']}: {size(sweep)} runs in {len(cmds)} grids under {root / sweep['name']}")
    if args.dry_run:
        print("\n".join(" ".join(cmd) for cmd in cmds))
        return 0
    claim(sweep, root / sweep["name"], extra, Path(args.sweep))
    return run(cmds, parallel=any(e.startswith("hydra/launcher=") for e in extra))

