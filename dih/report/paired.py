"""Paired comparisons of each method against CE, KD and any column named: the per-seed difference of test
accuracy.

Runs of one (data set, teacher, student, setting) with the same seed share their data order and their
student's initial weights, so the difference between two methods on the same seed leaves out much of the
seed-to-seed spread that the unpaired table's standard deviations hold. For each method and baseline the
report gives the mean of those per-seed differences, their sample standard deviation (ddof=1) and the 95%
t interval of the mean (dih/report/confidence.py), over the seeds both have, at the last epoch and at the
best-validation epoch. Beside CE and KD, ``python -m dih.report --against COLUMN`` pairs every column with
any other (an ablation against the method it ablates, say).
"""

from __future__ import annotations

import csv
import statistics
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from dih.errors import UserError
from dih.report.confidence import mean_interval
from dih.report.results import Cell
from dih.report.runs import VARIANTS, Row, RunRecord, column_order, row_order

BASELINES = ("ce", "kd")  # always compared against: the plain methods' columns, without options
LEVEL = 0.95  # of the interval of the mean difference


@dataclass
class Paired:
    """One method against one baseline on one row: the per-seed differences (method - baseline)."""

    row: Row
    column: str
    baseline: str
    variant: str
    seeds: list
    diffs: list[float]

    @property
    def stats(self) -> Cell:
        """The differences as a table cell: its n, mean and sample std (ddof=1)."""
        return Cell(self.diffs, self.seeds)

    @property
    def n(self) -> int:
        return self.stats.n

    @property
    def mean(self) -> float:
        return self.stats.mean

    @property
    def std(self) -> float | None:
        return self.stats.std

    @property
    def interval(self) -> tuple[float, float] | None:
        """The 95% t interval of the mean difference; None for a single seed."""
        return mean_interval(self.diffs, LEVEL)

    def text(self) -> str:
        if self.std is None:
            return f"{self.mean:+.2f} (n={self.n})"
        low, high = self.interval
        return f"{self.mean:+.2f} ± {self.std:.2f} (n={self.n}; {low:+.2f} to {high:+.2f})"


def _by_seed(records: list[RunRecord], variant: str) -> dict[tuple[Row, str], dict]:
    """(row, column) -> seed -> the student's accuracy; a seed found twice (a repeated run) is averaged."""
    found: dict[tuple[Row, str], dict] = defaultdict(lambda: defaultdict(list))
    for r in records:
        acc = r.accuracy(variant)
        if r.status == "done" and acc is not None and r.seed is not None:
            found[(r.row, r.column)][r.seed].append(float(acc))
    return {cell: {s: statistics.mean(v) for s, v in seeds.items()} for cell, seeds in found.items()}


def baselines(records: list[RunRecord], against: list[str] = ()) -> tuple[str, ...]:
    """CE, KD, then the columns named by ``against`` (checked: each must be a column of some run)."""
    columns = {r.column for r in records if r.status == "done" and r.accuracy() is not None}
    for name in against:
        if name not in columns:
            known = ", ".join(f"'{c}'" for c in sorted(columns, key=column_order)) or "none yet"
            raise UserError(f"--against '{name}' is no column of these runs; the columns are: {known}.")
    return tuple(dict.fromkeys([*BASELINES, *against]))


def paired(
    records: list[RunRecord], variant: str = "last", against: tuple[str, ...] = BASELINES
) -> list[Paired]:
    """Every column against each baseline present in its row, over the seeds both have (none: left out).
    Against each baseline, every column but that baseline and the ones before it, whose comparison with it
    is already there the other way round (so CE is compared against nothing, KD only against CE)."""
    accs = _by_seed(records, variant)
    out = []
    for (row, column), seeds in accs.items():
        for i, baseline in enumerate(against):
            base = accs.get((row, baseline))
            if column in against[: i + 1] or base is None:
                continue
            common = sorted(set(seeds) & set(base), key=str)
            if common:
                diffs = [seeds[s] - base[s] for s in common]
                out.append(Paired(row, column, baseline, variant, common, diffs))
    order = {b: i for i, b in enumerate(against)}
    return sorted(out, key=lambda p: (p.variant, order[p.baseline], row_order(p.row), column_order(p.column)))


def all_paired(records: list[RunRecord], against: list[str] = ()) -> list[Paired]:
    """Both epochs' comparisons against CE, KD and the columns ``against`` names."""
    chosen = baselines(records, against)
    return [p for variant in VARIANTS for p in paired(records, variant, chosen)]


def unpaired_baselines(records: list[RunRecord]) -> list[str]:
    """A sentence for each of CE and KD that has runs but no plain column to pair with (every KD run sets
    some loss option, say), naming the ``--against`` that pairs with one of its columns instead."""
    columns = {r.column for r in records if r.status == "done" and r.accuracy() is not None}
    notes = []
    for baseline in BASELINES:
        variants = sorted(c for c in columns if c.startswith(f"{baseline} ["))
        if variants and baseline not in columns:
            notes.append(
                f"No run of {baseline.upper()} has its default settings, so nothing is paired against "
                f"{baseline.upper()}; pass --against '{variants[0]}' (or another of its columns) to pair "
                "against one of its variants."
            )
    return notes


def markdown(found: list[Paired], table, notes: list[str] = ()) -> list[str]:
    """results.md's section: one table per (variant, baseline), rows as in the main tables, cells
    'mean difference ± its sample std (n; interval)'. ``table(header, lines)`` formats a Markdown table;
    ``notes``: sentences said before the tables (unpaired_baselines)."""
    if not found and not notes:
        return []
    out = [
        "",
        "## Paired differences",
        "",
        "Cells: mean ± sample std (ddof=1), over the seeds both have, of the per-seed difference of the "
        "student's test accuracy (points; column − baseline), then the 95% t interval of the mean "
        "difference. Runs of the same seed share their data order and initial weights, so this is the fair "
        "comparison.",
        *(f"\n{note}" for note in notes),
    ]
    titles = {"last": "at the last epoch", "best_val": "at the epoch of best validation accuracy"}
    chosen = list(dict.fromkeys(p.baseline for p in found))
    for variant in VARIANTS:
        for baseline in chosen:
            group = [p for p in found if p.variant == variant and p.baseline == baseline]
            if not group:
                continue
            rows = sorted({p.row for p in group}, key=row_order)
            columns = sorted({p.column for p in group}, key=column_order)
            cells = {(p.row, p.column): p for p in group}
            lines = [
                [row.label] + [c.text() if (c := cells.get((row, m))) else "–" for m in columns]
                for row in rows
            ]
            name = baseline.upper() if baseline in BASELINES else baseline
            out += ["", f"### Against {name}, {titles[variant]}", ""]
            out += table(["data set / teacher → student", *columns], lines)
    return out


def write_csv(found: list[Paired], path: Path) -> None:
    """paired.csv: one line per (row, method, baseline, variant)."""
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(
            ["dataset", "teacher", "student", "setting", "method", "baseline", "variant"]
            + ["mean_diff", "std_diff", "ci95_low", "ci95_high", "n", "seeds"]
        )
        for p in found:
            std = "" if p.std is None else f"{p.std:.4f}"
            low, high = ("", "") if p.interval is None else (f"{x:.4f}" for x in p.interval)
            row = [p.row.title or p.row.dataset, p.row.teacher, p.row.student, p.row.setting]
            seeds = " ".join(map(str, p.seeds))
            stats = [f"{p.mean:.4f}", std, low, high, p.n, seeds]
            writer.writerow([*row, p.column, p.baseline, p.variant, *stats])
