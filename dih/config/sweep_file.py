"""The sweep file format (multirun_sweeps/*.yaml): a ``name``, optional ``overrides`` for every run, and
``grids`` of value lists; each grid is the product of its lists. Read and expanded here only."""

import itertools
from pathlib import Path
from typing import NamedTuple

import yaml

from dih.errors import UserError

SWEEPS = Path(__file__).resolve().parents[2] / "multirun_sweeps"


SWEEP_KEYS = ("name", "overrides", "grids")
EXAMPLE = "see multirun_sweeps/laptop.yaml"


def load(path: Path) -> dict:
    """A sweep definition: ``name``, optional ``overrides`` for every run, and ``grids`` of value lists
    (a single value stands for a list of one), checked so a malformed file is one sentence naming it."""
    if not path.exists():
        known = sorted(p.name for p in SWEEPS.glob("*.yaml"))
        raise UserError(f"No sweep file {path}; the project's are in multirun_sweeps/: {', '.join(known)}.")
    try:
        sweep = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or type(exc).__name__
        raise UserError(f"{path} is not valid YAML ({problem}{where}); fix it ({EXAMPLE}).") from None
    if not isinstance(sweep, dict) or "name" not in sweep or not sweep.get("grids"):
        raise UserError(f"{path} needs a 'name' and a list of 'grids' ({EXAMPLE}).")
    for key in sweep:
        if key not in SWEEP_KEYS:
            raise UserError(f"Unknown key '{key}' in {path}; a sweep file has: {', '.join(SWEEP_KEYS)}.")
    check_name(sweep["name"], path)
    overrides = sweep.get("overrides") or []
    if not isinstance(overrides, list) or not all(isinstance(o, str) for o in overrides):
        raise UserError(
            f"'overrides' in {path} is {overrides!r}; write a list of run.py overrides, e.g. "
            "overrides: [experiment=smoke, dataset.train_size=300]."
        )
    return {**sweep, "overrides": overrides, "grids": _grids(sweep["grids"], path)}


def check_name(name, path: Path) -> None:
    """A sweep's name is its directory under ``--root``: a plain relative path that stays there."""
    parts = str(name).replace("\\", "/").split("/") if isinstance(name, str) else []
    if not parts or any(part in ("", ".", "..") for part in parts) or ":" in str(name):
        raise UserError(
            f"'name' in {path} is {name!r}; it names the sweep's directory under --root, so write a plain "
            "relative path with no '..', '.', empty or absolute parts (e.g. name: my_sweep)."
        )


def _grids(grids, path: Path) -> list[dict]:
    """Each grid a mapping of override key -> list of values; a single value is a list of one."""
    if not isinstance(grids, list):
        raise UserError(
            f"'grids' in {path} is a {type(grids).__name__}; write a list of grids, each a mapping of "
            f"override key to a list of values ({EXAMPLE})."
        )
    checked = []
    for i, grid in enumerate(grids):
        if not isinstance(grid, dict) or not grid:
            raise UserError(
                f"Grid {i} in {path} is {grid!r}; each grid is a mapping of override key to a list of values "
                f"({EXAMPLE})."
            )
        axes = {}
        for key, values in grid.items():
            values = values if isinstance(values, list) else [values]
            if not values or any(isinstance(v, dict | list) or v is None for v in values):
                raise UserError(
                    f"'{key}' in grid {i} of {path} is {grid[key]!r}; give a value or a non-empty list of "
                    "values (numbers or names)."
                )
            axes[str(key)] = values
        checked.append(axes)
    return checked


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
