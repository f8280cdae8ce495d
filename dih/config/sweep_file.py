"""The sweep file format (multirun_sweeps/*.yaml): a ``name``, optional ``overrides`` for every run, and
``grids`` of value lists; each grid is the product of its lists. Read and expanded here only."""

import itertools
from pathlib import Path
from typing import NamedTuple

import yaml

from dih.errors import UserError

SWEEPS = Path(__file__).resolve().parents[2] / "multirun_sweeps"


def load(path: Path) -> dict:
    """A sweep definition: ``name``, optional ``overrides`` for every run, and ``grids`` of value lists."""
    if not path.exists():
        known = sorted(p.name for p in SWEEPS.glob("*.yaml"))
        raise UserError(f"No sweep file {path}; the project's are in multirun_sweeps/: {', '.join(known)}.")
    sweep = yaml.safe_load(path.read_text())
    if not isinstance(sweep, dict) or "name" not in sweep or not sweep.get("grids"):
        raise UserError(f"{path} needs a 'name' and a list of 'grids' (see multirun_sweeps/laptop.yaml).")
    return sweep


class Run(NamedTuple):
    """One run of a sweep: its grid, its number within the grid (Hydra's job number) and its overrides."""

    grid: int
    num: int
    overrides: list[str]


def expand(sweep: dict, extra: list[str] = ()) -> list[Run]:
    """Every run of the sweep, grid by grid in Hydra's multirun order: the sweep's ``overrides``, then the
    grid's values, then ``extra``."""
    runs = []
    for g, grid in enumerate(sweep["grids"]):
        for num, values in enumerate(itertools.product(*grid.values())):
            axes = [f"{key}={value}" for key, value in zip(grid, values)]
            runs.append(Run(g, num, [*sweep.get("overrides", []), *axes, *extra]))
    return runs


def run_overrides(sweep: dict, extra: list[str]) -> list[list[str]]:
    """The overrides of every run of the sweep (what its multiruns compose), for planning."""
    return [run.overrides for run in expand(sweep, extra)]


def size(sweep: dict) -> int:
    return len(expand(sweep))
