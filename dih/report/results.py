"""A sweep's runs aggregated: the seed-averaged tables, head accuracies by depth, learning curves.

Rows are (data set, teacher, student), columns are methods in the paper's order, cells the mean +- sample
std of the student's test accuracy over seeds. The runs come from dih/report/runs.py (``gather``);
``dih.report.write`` writes the results out.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import dataclass, field

from dih.report.runs import VARIANTS, Row, RunRecord, column_order, gather, row_order
from dih.train import metrics
from dih.train.metrics import LAST, MAIN

# gather, Row and RunRecord are runs.py's, here too for the report's readers
__all__ = ["VARIANTS", "VARIANT_TITLES", "Cell", "HeadsResult", "Row", "RunRecord", "Table"]
__all__ += ["TargetsResult", "curves", "gather", "heads", "heads_variant", "student_curve", "table", "tables"]
__all__ += ["targets"]

VARIANT_TITLES = {
    "last": "Student test accuracy (%) at the last epoch",
    "best_val": "Student test accuracy (%) at the epoch of best validation accuracy",
}


@dataclass
class Cell:
    """The student's accuracies of one (row, column) over seeds."""

    values: list[float] = field(default_factory=list)
    seeds: list = field(default_factory=list)

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return statistics.mean(self.values)

    @property
    def std(self) -> float | None:
        """The sample standard deviation (ddof=1); None for a single seed."""
        return statistics.stdev(self.values) if self.n > 1 else None

    def text(self) -> str:
        if self.std is None:
            return f"{self.mean:.2f} (n={self.n})"
        return f"{self.mean:.2f} ± {self.std:.2f} (n={self.n})"


@dataclass
class Table:
    """One of the paper's tables: rows are pairs, columns methods, cells over seeds."""

    variant: str
    rows: list[Row]
    columns: list[str]
    cells: dict[tuple[Row, str], Cell]

    def cell(self, row: Row, column: str) -> Cell | None:
        return self.cells.get((row, column))


@dataclass
class HeadsResult:
    """The test accuracy of each head of one teacher (shallow first), and the teacher's own."""

    dataset: str
    teacher: str
    kind: str
    setting: str
    heads: list[float]
    teacher_acc: float | None
    n: int  # distinct heads artifacts averaged
    title: str = ""
    variant: str = ""  # how the heads were trained, where not as the original (heads_variant)

    @property
    def label(self) -> str:
        kind = f"{self.kind} heads, {self.variant}" if self.variant else f"{self.kind} heads"
        text = f"{self.title or self.dataset} / {self.teacher} ({kind})"
        return f"{text}, {self.setting}" if self.setting else text


@dataclass
class TargetsResult:
    """How soft one cohort's targets were at a temperature, as the students it taught measured them on the
    training images (dih/teacher_side/softness.py): per classifier, shallow head first, teacher last."""

    heads: str  # the HeadsResult label of the heads, or the teacher's for a cohort without heads
    temperature: float
    classifiers: list[str]
    one_hot_share: list[float]  # % of images whose top target probability is >= 0.99
    entropy: list[float]  # mean entropy / log C
    n: int  # student runs that measured it


# ----------------------------------------------------------------------------------------------- tables


def table(records: list[RunRecord], variant: str = "last") -> Table:
    """The paper's table of the finished runs' student accuracies (``variant``: last or best_val).

    One value per seed: a run that repeats another's student artifact (same key) counts once, and a seed
    run twice into different artifacts (on another machine, say) is averaged, as the paired comparison
    does, so n is always the number of seeds.
    """
    by_seed: dict[tuple[Row, str], dict] = defaultdict(dict)
    for r in records:
        acc = r.accuracy(variant)
        if r.status != "done" or acc is None:
            continue
        runs = by_seed[(r.row, r.column)].setdefault(r.seed, {})
        runs.setdefault(r.stages["student"].get("key"), float(acc))
    cells = {
        cell: Cell([statistics.mean(runs.values()) for runs in seeds.values()], list(seeds))
        for cell, seeds in by_seed.items()
    }
    rows = sorted({row for row, _ in cells}, key=row_order)
    columns = sorted({column for _, column in cells}, key=column_order)
    return Table(variant, rows, columns, cells)


def tables(records: list[RunRecord]) -> list[Table]:
    """The last-epoch table, and the best-validation one when any run reports it."""
    found = [table(records, variant) for variant in VARIANTS]
    return [t for t in found if t.variant == "last" or t.cells]


def heads(records: list[RunRecord]) -> list[HeadsResult]:
    """Each teacher's heads by depth (from any run with a heads stage), with the teacher's own accuracy."""
    groups: dict[tuple, dict[str, tuple[list[float], float | None]]] = defaultdict(dict)
    for r in records:
        stage = r.stages.get("heads")
        if r.status != "done" or not stage:
            continue
        accs = metrics.head_accuracies(stage)
        if not accs:
            continue
        kind = str((r.config.get("method") or {}).get("heads", "linear"))
        teacher_acc = r.stages.get("teacher", {}).get(metrics.final(MAIN, LAST))
        group = groups[(r.dataset, r.teacher, kind, r.setting, r.title, heads_variant(r))]
        group[stage.get("key", str(r.path))] = (accs, teacher_acc)
    results = []
    for (dataset, teacher, kind, setting, title, variant), found in groups.items():
        depths = min(len(accs) for accs, _ in found.values())
        teacher_accs = [t for _, t in found.values() if t is not None]
        results.append(
            HeadsResult(
                dataset,
                teacher,
                kind,
                setting,
                [statistics.mean(accs[i] for accs, _ in found.values()) for i in range(depths)],
                statistics.mean(teacher_accs) if teacher_accs else None,
                len(found),
                title,
                variant,
            )
        )
    return sorted(
        results, key=lambda h: (row_order(Row(h.dataset, h.teacher, "", h.setting)), h.kind, h.variant)
    )


def heads_variant(record: RunRecord) -> str:
    """How a run's heads were trained where not as the original (its heads stage's spec identity against
    its teacher's): ``lr chosen on val from 0.1/0.01/0.001, calibrated``; empty for the original."""
    heads = (record.stages.get("heads") or {}).get("identity") or {}
    teacher = (record.stages.get("teacher") or {}).get("identity") or {}
    parts = []
    if heads.get("lr_search"):
        parts.append("lr chosen on val from " + "/".join(f"{lr:g}" for lr in heads["lr_search"]))
    own, base = dict(heads.get("recipe") or {}), dict(teacher.get("recipe") or {})
    if heads.get("lr_search"):
        own.pop("lr", None)
        base.pop("lr", None)
    if own and base:
        parts += [f"{k} {_show(v)}" for k, v in own.items() if base.get(k) != v]
    if heads.get("calibrate"):
        parts.append("calibrated")
    return ", ".join(parts)


def targets(records: list[RunRecord]) -> list[TargetsResult]:
    """Each cohort's target softness at each temperature its finished students measured (one row per heads
    label and temperature; the figures of runs that share both are averaged, and are equal where their
    teacher side is)."""
    found: dict[tuple[str, float], list[dict]] = defaultdict(list)
    labels = {}
    for h in heads(records):
        labels[(h.dataset, h.teacher, h.kind, h.setting, h.title, h.variant)] = h.label
    for r in records:
        student = r.stages.get("student") or {}
        temperature = student.get(metrics.TARGETS_TEMPERATURE)
        if r.status != "done" or temperature is None:
            continue
        kind = str((r.config.get("method") or {}).get("heads", "linear"))
        alone = _cohort_names(student) == [metrics.TEACHER]  # KD's: its teacher's heads are no part of it
        key = (r.dataset, r.teacher, kind, r.setting, r.title, heads_variant(r))
        label = None if alone else labels.get(key)
        if label is None:  # a cohort of the teacher alone (KD)
            text = f"{r.title or r.dataset} / {r.teacher} (teacher alone)"
            label = f"{text}, {r.setting}" if r.setting else text
        found[(label, float(temperature))].append(student)
    results = []
    for (label, temperature), students in sorted(found.items()):
        names = _cohort_names(students[0])
        results.append(
            TargetsResult(
                label,
                temperature,
                names,
                [statistics.mean(s[metrics.targets(c, "one_hot_share")] for s in students) for c in names],
                [statistics.mean(s[metrics.targets(c, "entropy")] for s in students) for c in names],
                len(students),
            )
        )
    return results


def _cohort_names(student: dict) -> list[str]:
    """The cohort classifiers a student summary holds target figures for: head1... then teacher."""
    names = []
    while metrics.targets(metrics.head(len(names) + 1), "entropy") in student:
        names.append(metrics.head(len(names) + 1))
    return names + [metrics.TEACHER]


def _show(value) -> str:
    return "/".join(f"{v:g}" for v in value) if isinstance(value, list) else f"{value:g}"


# ----------------------------------------------------------------------------------------------- curves


def student_curve(record: RunRecord) -> list[tuple[int, float]] | None:
    """(epoch, student test accuracy) per epoch: from the artifact store, else from the run's own
    metrics.jsonl (which holds the epochs trained in that run); None when neither is found."""
    if record.run.key("student") is None:
        return None
    test_acc = metrics.acc(MAIN, "test")
    lines = record.run.metrics("student") or []
    points = [
        (int(x[metrics.EPOCH]), float(x[test_acc])) for x in lines if test_acc in x and metrics.EPOCH in x
    ]
    return points or None


def curves(records: list[RunRecord]) -> tuple[dict[tuple[Row, str], list[tuple[int, float]]], int]:
    """Per (row, column), the per-epoch test accuracy averaged over seeds; and how many runs had none."""
    per_epoch: dict[tuple[Row, str], dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    missing = 0
    for r in records:
        if r.status != "done" or r.accuracy() is None:
            continue
        points = student_curve(r)
        if points is None:
            missing += 1
            continue
        for epoch, acc in points:
            per_epoch[(r.row, r.column)][epoch].append(acc)
    means = {
        cell: [(e, statistics.mean(accs)) for e, accs in sorted(epochs.items())]
        for cell, epochs in per_epoch.items()
    }
    return means, missing
