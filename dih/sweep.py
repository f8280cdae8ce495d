"""Run a sweep definition from multirun_sweeps/: each grid becomes one Hydra multirun of run.py, so Hydra's
launchers (local, or Slurm through submitit) do the work and the artifact store shares the teachers.

    python -m dih.sweep multirun_sweeps/laptop.yaml                      # here, one run after another
    python -m dih.sweep multirun_sweeps/cifar100.yaml hydra/launcher=slurm hydra.launcher.partition=gpu
    python -m dih.sweep multirun_sweeps/cifar100.yaml --submit hydra/launcher=slurm ...

Hydra's launcher waits for its jobs, so a grid of days would hold a terminal for days: ``--submit`` sends
this driver itself to Slurm as a small CPU job and returns at once; ``python -m dih.report`` works on the
sweep directory at any time, finished or not.
"""

import argparse
import itertools
import subprocess
import sys
from pathlib import Path

import yaml

from dih.errors import UserError

RUN_PY = Path(__file__).resolve().parents[1] / "run.py"


def load(path: Path) -> dict:
    """A sweep definition: ``name``, optional ``overrides`` for every run, and ``grids`` of value lists."""
    if not path.exists():
        known = sorted(p.name for p in (RUN_PY.parent / "multirun_sweeps").glob("*.yaml"))
        raise UserError(f"No sweep file {path}; the project's are in multirun_sweeps/: {', '.join(known)}.")
    sweep = yaml.safe_load(path.read_text())
    if not isinstance(sweep, dict) or "name" not in sweep or not sweep.get("grids"):
        raise UserError(f"{path} needs a 'name' and a list of 'grids' (see multirun_sweeps/laptop.yaml).")
    return sweep


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


def run_overrides(sweep: dict, extra: list[str]) -> list[list[str]]:
    """The overrides of every run of the sweep, grid by grid (what its multiruns compose), for planning."""
    runs = []
    for grid in sweep["grids"]:
        for values in itertools.product(*grid.values()):
            axes = [f"{key}={value}" for key, value in zip(grid, values)]
            runs.append([*sweep.get("overrides", []), *axes, *extra])
    return runs


def size(sweep: dict) -> int:
    return sum(len(list(itertools.product(*grid.values()))) for grid in sweep["grids"])


def run(cmds: list[list[str]], parallel: bool) -> int:
    """Run the grids' multiruns: side by side when a launcher sends the jobs elsewhere, else in turn."""
    if not parallel:
        return max(subprocess.run(cmd).returncode for cmd in cmds)
    procs = [subprocess.Popen(cmd) for cmd in cmds]
    return max(p.wait() for p in procs)


def submit(args: argparse.Namespace, extra: list[str]) -> None:
    """Send this driver to Slurm as a small CPU job that outlives the terminal."""
    import submitit

    folder = Path(args.root).absolute() / load(Path(args.sweep))["name"] / ".driver"
    executor = submitit.AutoExecutor(folder=folder, cluster="slurm")
    executor.update_parameters(
        timeout_min=args.driver_hours * 60,
        cpus_per_task=1,
        mem_gb=4,
        gpus_per_node=0,
        slurm_partition=args.driver_partition,
        name="dih-sweep",
    )
    argv = [
        sys.executable,
        "-m",
        "dih.sweep",
        str(Path(args.sweep).absolute()),
        "--root",
        str(Path(args.root).absolute()),
        *extra,
    ]
    job = executor.submit(subprocess.run, argv, check=True, cwd=str(RUN_PY.parent))
    print(f"submitted the sweep driver as Slurm job {job.job_id}; its log is in {folder}.")
    print(f"follow it with: squeue -j {job.job_id}; the results so far: python -m dih.report {args.root}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dih.sweep", description=__doc__.split("\n\n")[0])
    parser.add_argument("sweep", help="a sweep definition, e.g. multirun_sweeps/cifar100.yaml")
    parser.add_argument("--root", default="multirun", help="where sweep directories go (default: multirun)")
    parser.add_argument("--dry-run", action="store_true", help="print the commands instead of running them")
    parser.add_argument("--submit", action="store_true", help="submit this driver to Slurm and return")
    parser.add_argument("--driver-partition", default=None, help="Slurm partition of the --submit driver job")
    parser.add_argument("--driver-hours", type=int, default=24 * 14, help="time limit of the driver job")
    args, extra = parser.parse_known_args(argv)
    try:
        sweep = load(Path(args.sweep))
        if args.submit:
            submit(args, extra)
            return 0
        cmds = commands(sweep, Path(args.root).absolute(), extra)
        print(
            f"sweep {sweep['name']}: {size(sweep)} runs in {len(cmds)} grids"
            f" under {args.root}/{sweep['name']}"
        )
        if args.dry_run:
            print("\n".join(" ".join(cmd) for cmd in cmds))
            return 0
        return run(cmds, parallel=any(e.startswith("hydra/launcher=") for e in extra))
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
