"""``python -m dih.plan``: every distinct artifact a run, a multirun or a whole sweep needs, without
training anything.

    python -m dih.plan method=dih teacher=res110 student=res8        # the plan of one run
    python -m dih.plan method=kd,dih seed=30,50,67                   # of a multirun
    python -m dih.plan multirun_sweeps/cifar100.yaml [overrides]     # of a whole sweep
    python -m dih.plan multirun_sweeps/cifar100.yaml device=cuda --device-hours   # its device-hours

Each artifact is listed once with its kind, key, the artifacts it reads, whether the store has it, and a
rough cost; with ``--device-hours``, the device-hours of those the store lacks, per stage kind, from the
rates measured on a device kind (dih/plan/hours.py from dih/plan/rates.py's table). Every run is composed
and validated before the planner, the store and torch are imported, so a
bad setting is answered in about a second.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

from omegaconf import DictConfig

from dih.data import train_split_size
from dih.errors import command

if TYPE_CHECKING:
    from dih.plan.chain import Planned
    from dih.stages.specs import Spec
    from dih.store.artifacts import ArtifactStore


def distinct(plans: list[list[Planned]]) -> list[Spec]:
    """Every distinct spec of several runs' plans, upstream before downstream, each once."""
    seen: dict[str, Spec] = {}
    for run in plans:
        for p in run:
            seen.setdefault(p.spec.key, p.spec)
    return list(seen.values())


def cost(spec: Spec) -> tuple[str, int | None]:
    """A rough cost: epochs x training images for a trained stage, variants x images (teacher-side
    forwards) for a cohort cache; the total in image passes, None where the data set's size is unknown."""
    from dih.stages.specs import CohortSpec
    from dih.teacher_side import cohort_cache

    images = train_split_size(spec.data)
    if isinstance(spec, CohortSpec):
        times = cohort_cache.num_variants(spec.pad)
    else:
        times = spec.recipe.epochs
    shown = f"{times} x {images if images is not None else '?'}"
    return shown, times * images if images is not None else None


def rows(specs: list[Spec], store: ArtifactStore) -> list[dict]:
    out = []
    for spec in specs:
        shown, passes = cost(spec)
        out.append(
            {
                "kind": spec.kind,
                "key": spec.key,
                "needs": sorted(spec.upstream().values()),
                "in_store": store.has(spec.key),
                "cost": shown,
                "image_passes": passes,
            }
        )
    return out


def configs_for(args: list[str]) -> list[DictConfig]:
    """The composed configs of a sweep file (with overrides after it) or of one run's (multirun) overrides."""
    from dih.config import compose, sweep_file

    if args and args[0].endswith((".yaml", ".yml")):
        runs = sweep_file.run_overrides(sweep_file.load(Path(args[0])), args[1:])
    else:
        runs = compose.expand_sweep([a for a in args if a not in ("-m", "--multirun")])
    return [compose.compose_run(overrides) for overrides in runs]


def _human(n: int | None) -> str:
    if n is None:
        return "?"
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= size:
            return f"{n / size:.1f}{unit}"
    return str(n)


def device_hours(table, ns: argparse.Namespace, configs: list[DictConfig], specs: list[Spec], store) -> str:
    """The ``--device-hours`` report: what the store lacks, and what it has, separately."""
    from dih.device import planned_device_type
    from dih.plan import hours, rates

    kind = rates.device_kind(table, ns.device_kind, {planned_device_type(str(cfg.device)) for cfg in configs})
    ws = hours.works(specs, ns.train_images)
    todo = [w for w, s in zip(ws, specs, strict=True) if not store.has(s.key)]
    stored = [w for w, s in zip(ws, specs, strict=True) if store.has(s.key)]
    header = (
        f"{len(configs)} run(s), {len(specs)} distinct artifacts ({len(stored)} in the store {store.root}); "
        f"rates from {table.path.name}"
    )
    lines = [hours.estimate(table, kind, part, ns.scaling) for part in (todo, stored)]
    if ns.json:
        return "\n".join(
            json.dumps(hours.as_json(kind, x, in_store))
            for part, in_store in zip(lines, (False, True))
            for x in part
        )
    return hours.report(kind, *lines, header, ns.scaling)


@command
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m dih.plan",
        description="Print every distinct artifact a run, a multirun or a sweep needs, without training.",
    )
    parser.add_argument("args", nargs="*", help="run.py overrides, or a sweep file and overrides")
    parser.add_argument("--json", action="store_true", help="one JSON object per artifact instead of a table")
    parser.add_argument(
        "--device-hours",
        action="store_true",
        help="estimate the device-hours of what the store lacks, per stage kind, from measured rates",
    )
    parser.add_argument(
        "--device-kind",
        help="the rates' device kind (in dih/plan/device_rates.yaml; default: the one of the runs' device=)",
    )
    parser.add_argument(
        "--scaling",
        choices=("same", "flops", "layers"),
        help="how a model with no measured row is assumed to run (default: the device kind's, in the table)",
    )
    parser.add_argument(
        "--rates",
        type=Path,
        help="with --device-hours: another rates table of the same form (default dih/plan/device_rates.yaml)",
    )
    parser.add_argument(
        "--train-images",
        type=int,
        help="with --device-hours: the training split's size where it cannot be counted (a folder not here)",
    )
    ns, extra = parser.parse_known_args(argv)
    table = None
    if ns.device_hours or ns.device_kind or ns.scaling or ns.rates or ns.train_images is not None:
        from dih.plan import rates

        table = rates.load(ns.rates or rates.TABLE)
        rates.check_kind(table, ns.device_kind)  # before the runs are composed and planned
    configs = configs_for([*ns.args, *extra])
    from dih.device import planned_device_type
    from dih.plan.chain import plan_run
    from dih.store.artifacts import ArtifactStore

    plans = [plan_run(cfg) for cfg in configs]
    roots = {str(cfg.artifacts.root) for cfg in configs}
    store = ArtifactStore(Path(configs[0].artifacts.root))
    specs = distinct(plans)
    if table is not None:
        print(device_hours(table, ns, configs, specs, store))
        return 0
    table = rows(specs, store)
    if ns.json:
        print("\n".join(json.dumps(r) for r in table))
        return 0
    print(f"{len(configs)} run(s), {len(table)} distinct artifacts, store {store.root}")
    if any(cfg.device == "auto" for cfg in configs):
        # bf16 'auto' (in the keys) depends on the device: a plan for jobs on other machines must name it
        print(f"device=auto planned as {planned_device_type('auto')} here; for jobs elsewhere pass device=")
    if len(roots) > 1:
        print(f"(the runs name {len(roots)} artifact roots; 'in store' looks in the first)")
    print(f"{'kind':<10} {'key':<27} {'in store':<9} {'cost':>18} {'passes':>8}  needs")
    for r in table:
        needs = ", ".join(r["needs"]) or "-"
        stored = "yes" if r["in_store"] else "no"
        passes = _human(r["image_passes"])
        print(f"{r['kind']:<10} {r['key']:<27} {stored:<9} {r['cost']:>18} {passes:>8}  {needs}")
    counts = Counter(r["kind"] for r in table)
    todo = [r for r in table if not r["in_store"]]
    total = sum(r["image_passes"] or 0 for r in todo)
    print("by kind: " + ", ".join(f"{k} {n}" for k, n in counts.items()))
    print(f"to build: {len(todo)} of {len(table)}, about {_human(total)} image passes")
    return 0
