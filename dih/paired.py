"""Paired comparisons of each method against CE and against KD: the per-seed difference of test accuracy.

Runs of one (data set, teacher, student, setting) with the same seed share their data order and their
student's initial weights, so the difference between two methods on the same seed leaves out much of the
seed-to-seed spread that the unpaired table's standard deviations hold. For each method and baseline the
report gives the mean of those per-seed differences and their sample standard deviation (ddof=1), over the
seeds both have, at the last epoch and at the best-validation epoch.
"""

from __future__ import annotations

import csv
import statistics
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from dih.results import VARIANTS, Cell, Row, RunRecord, _column_order, _row_order

BASELINES = ("ce", "kd")  # the columns compared against: those of the plain methods, without options


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

    def text(self) -> str:
        spread = "" if self.std is None else f" ± {self.std:.2f}"
        return f"{self.mean:+.2f}{spread} (n={self.n})"


def _by_seed(records: list[RunRecord], variant: str) -> dict[tuple[Row, str], dict]:
    """(row, column) -> seed -> the student's accuracy; a seed found twice (a repeated run) is averaged."""
    found: dict[tuple[Row, str], dict] = defaultdict(lambda: defaultdict(list))
    for r in records:
        acc = r.accuracy(variant)
        if r.status == "done" and acc is not None and r.seed is not None:
            found[(r.row, r.column)][r.seed].append(float(acc))
    return {cell: {s: statistics.mean(v) for s, v in seeds.items()} for cell, seeds in found.items()}


def paired(records: list[RunRecord], variant: str = "last") -> list[Paired]:
    """Every method against each baseline present in its row, over the seeds both have (none: left out).
    CE is the base of every other method and is not compared against KD (that is KD against CE, negated)."""
    accs = _by_seed(records, variant)
    out = []
    for (row, column), seeds in accs.items():
        for baseline in BASELINES:
            base = accs.get((row, baseline))
            if column in ("ce", baseline) or base is None:
                continue
            common = sorted(set(seeds) & set(base), key=str)
            if common:
                diffs = [seeds[s] - base[s] for s in common]
                out.append(Paired(row, column, baseline, variant, common, diffs))
    return sorted(out, key=lambda p: (p.variant, p.baseline, _row_order(p.row), _column_order(p.column)))


def all_paired(records: list[RunRecord]) -> list[Paired]:
    return [p for variant in VARIANTS for p in paired(records, variant)]


def markdown(found: list[Paired], table) -> list[str]:
    """results.md's section: one table per (variant, baseline), rows as in the main tables, cells
    'mean difference ± its sample std (n)'. ``table(header, lines)`` formats a Markdown table."""
    if not found:
        return []
    out = [
        "",
        "## Paired differences against CE and KD",
        "",
        "Cells: mean ± sample std (ddof=1), over the seeds both have, of the per-seed difference of the "
        "student's test accuracy (points; method − baseline). Runs with one seed share their data order and "
        "initial weights, so this is the fair comparison.",
    ]
    titles = {"last": "at the last epoch", "best_val": "at the epoch of best validation accuracy"}
    for variant in VARIANTS:
        for baseline in BASELINES:
            group = [p for p in found if p.variant == variant and p.baseline == baseline]
            if not group:
                continue
            rows = sorted({p.row for p in group}, key=_row_order)
            columns = sorted({p.column for p in group}, key=_column_order)
            cells = {(p.row, p.column): p for p in group}
            lines = [
                [row.label] + [c.text() if (c := cells.get((row, m))) else "–" for m in columns]
                for row in rows
            ]
            out += ["", f"### Against {baseline.upper()}, {titles[variant]}", ""]
            out += table(["data set / teacher → student", *columns], lines)
    return out


def write_csv(found: list[Paired], path: Path) -> None:
    """paired.csv: one line per (row, method, baseline, variant)."""
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(
            ["dataset", "teacher", "student", "setting", "method", "baseline", "variant"]
            + ["mean_diff", "std_diff", "n", "seeds"]
        )
        for p in found:
            std = "" if p.std is None else f"{p.std:.4f}"
            row = [p.row.title or p.row.dataset, p.row.teacher, p.row.student, p.row.setting]
            seeds = " ".join(map(str, p.seeds))
            writer.writerow([*row, p.column, p.baseline, p.variant, f"{p.mean:.4f}", std, p.n, seeds])
