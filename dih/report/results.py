"""Runs of a sweep, gathered and aggregated: run records, the seed-averaged tables, head accuracies, curves.

A run directory is one with the ``config.yaml`` that ``dih.pipeline.run`` writes; beside it ``summary.json``
(finished), ``failed.json`` (failed) or neither (running or killed). Rows are (data set, teacher, student),
columns are methods in the paper's order, cells the mean +- sample std of the student's test accuracy over
seeds. ``dih.report.write`` writes them out.
"""

from __future__ import annotations

import json
import os
import re
import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import yaml

from dih.errors import UserError
from dih.models.zoo import MODEL_NAMES, model_size
from dih.store.run_dir import artifact_stores, dataset_title

METHOD_ORDER = ("ce", "kd", "fitnets", "takd", "at", "crd", "tofd", "mhkd", "dih")
DATASET_ORDER = ("cifar10", "cifar100", "tiny_imagenet")
# Parameters (millions, at 100 classes; SPEC s.2): orders teachers and students by size.
VARIANTS = {"last": "test/acc_last", "best_val": "test/acc_best_val"}
VARIANT_TITLES = {
    "last": "Student test accuracy (%) at the last epoch",
    "best_val": "Student test accuracy (%) at the epoch of best validation accuracy",
}
# Config keys that never change a result (or are the table's own axes): they never split a row or column.
IGNORED = (
    "seed",
    "device",
    "artifacts",
    "logger",
    "stage",
    "trainer.progress",
    "trainer.eval_batch_size",
    "trainer.deterministic",
    "trainer.compile",
    "teacher_side.channels_last",
    "teacher_side.compile",
    "teacher_side.cache_device_share",
    "dataset.name",
    "dataset.label",  # a name for reports: it titles the row instead
    "teacher.name",
    "student.name",
    "method.name",
    "method.stages",
)
ROOT_NAMES_DATA = ("folder", "tiny_imagenet")  # data sets whose dataset.root is part of their identity
# .teacher_side: the run directories of a Slurm sweep's teacher-side jobs (dih/sweep/schedule.py),
# not runs of it
SKIP_DIRS = {".hydra", "report", "__pycache__", ".git", ".teacher_side"}
ARTIFACT_DIR = re.compile(r"^[a-z_]+-[0-9a-f]{16}(\.corrupt-\d+)?$")


class Row(NamedTuple):
    """A row of the table: a teacher -> student pair on a data set, under one setting."""

    dataset: str
    teacher: str
    student: str
    setting: str = ""
    title: str = ""  # the data set's name for readers (dataset_title) where it is not `dataset`

    @property
    def label(self) -> str:
        text = f"{self.title or self.dataset} / {self.teacher} → {self.student}"
        return f"{text} ({self.setting})" if self.setting else text


@dataclass
class RunRecord:
    """One run directory: where it belongs in the table and how it ended."""

    path: Path
    status: str  # "done", "failed" or "unfinished"
    dataset: str
    teacher: str
    student: str
    method: str
    seed: int | None
    config: dict
    summary: dict | None = None
    error: str | None = None
    setting: str = ""  # settings that tell this run's row apart from the same pair's other rows
    title: str = ""  # the data set's name for readers, where it is not `dataset`
    options: str = ""  # method settings that tell this run's column apart from the same method's others

    @property
    def stages(self) -> dict:
        return (self.summary or {}).get("stages", {})

    @property
    def row(self) -> Row:
        return Row(self.dataset, self.teacher, self.student, self.setting, self.title)

    @property
    def column(self) -> str:
        return f"{self.method} [{self.options}]" if self.options else self.method

    def accuracy(self, variant: str = "last") -> float | None:
        """The student's test accuracy at the last or best-validation epoch; None without a student."""
        return self.stages.get("student", {}).get(VARIANTS[variant])


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

    @property
    def label(self) -> str:
        text = f"{self.title or self.dataset} / {self.teacher} ({self.kind} heads)"
        return f"{text}, {self.setting}" if self.setting else text


# ----------------------------------------------------------------------------------------------- gathering


def gather(directory: Path | str, exclude: Path | None = None) -> list[RunRecord]:
    """Every run under ``directory`` (recursively), finished, failed or unfinished, in table order."""
    root = Path(directory).resolve()
    if not root.is_dir():
        raise UserError(f"{directory} is not a directory; give the sweep or outputs directory of the runs.")
    skip = exclude.resolve() if exclude is not None else None
    records = []
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        dirnames[:] = sorted(
            d for d in dirnames if d not in SKIP_DIRS and not ARTIFACT_DIR.match(d) and here / d != skip
        )
        if "config.yaml" in filenames and (record := _read_run(here)) is not None:
            records.append(record)
    _label_settings(records)
    return sorted(
        records, key=lambda r: (_row_order(r.row), _column_order(r.column), str(r.seed), str(r.path))
    )


def _read_run(path: Path) -> RunRecord | None:
    """The run in ``path``; None when its config.yaml is not a run's (e.g. the project's conf/)."""
    try:
        config = yaml.safe_load((path / "config.yaml").read_text())
        names = {g: config[g]["name"] for g in ("dataset", "teacher", "student", "method")}
    except (yaml.YAMLError, OSError, TypeError, KeyError):
        return None
    record = RunRecord(path, "unfinished", **names, seed=config.get("seed"), config=config)
    title = dataset_title(config["dataset"])
    record.title = "" if title == record.dataset else title
    if (path / "summary.json").exists():
        try:
            record.summary = json.loads((path / "summary.json").read_text())
            record.status = "done"
        except (json.JSONDecodeError, OSError) as exc:
            record.status, record.error = "failed", f"unreadable summary.json ({exc})"
    elif (path / "failed.json").exists():
        record.status = "failed"
        try:
            record.error = str(json.loads((path / "failed.json").read_text()).get("error", "no error given"))
        except (json.JSONDecodeError, OSError, AttributeError) as exc:
            record.error = f"unreadable failed.json ({exc})"
    return record


def _flatten(config: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flatten(value, f"{name}."))
        else:
            out[name] = json.dumps(value) if isinstance(value, list | dict) else value
    return out


def _ignored(key: str, dataset: str) -> bool:
    if key == "dataset.root":
        return dataset not in ROOT_NAMES_DATA
    return any(key == i or key.startswith(f"{i}.") for i in IGNORED)


def _label_settings(records: list[RunRecord]) -> None:
    """Name the settings that differ between runs of one pair, so that runs made differently never share a
    cell nor a row (where the paired comparison would take them for the same setting).

    A non-method key that varies among the runs of a (data set, teacher, student), whatever their methods
    (e.g. ``trainer.epochs``: CE at 15 epochs and KD at 30), splits rows on that data set; a ``method.*``
    key that varies among one method's runs of a pair (e.g. ``method.loss.alpha``) splits its column.
    """
    flat = [_flatten(r.config) for r in records]
    pairs: dict[tuple, list[dict]] = defaultdict(list)
    cells: dict[tuple, list[dict]] = defaultdict(list)
    for r, f in zip(records, flat):
        pairs[(r.dataset, r.teacher, r.student)].append(f)
        cells[(r.dataset, r.teacher, r.student, r.method)].append(f)

    def varying(group: list[dict], dataset: str, method_keys: bool) -> set[str]:
        # A key some runs lack (written by an older version of the project) is compared among the rest.
        return {
            key
            for key in set().union(*group)
            if key.startswith("method.") == method_keys
            and not _ignored(key, dataset)
            and len({str(f[key]) for f in group if key in f}) > 1
        }

    row_keys: dict[str, set[str]] = defaultdict(set)
    column_keys: dict[str, set[str]] = defaultdict(set)
    for (dataset, _, _), group in pairs.items():
        row_keys[dataset] |= varying(group, dataset, method_keys=False)
    for (dataset, _, _, method), group in cells.items():
        column_keys[method] |= varying(group, dataset, method_keys=True)
    for r, f in zip(records, flat):
        r.setting = ", ".join(f"{k}={f[k]}" for k in sorted(row_keys[r.dataset]) if k in f)
        r.options = ", ".join(
            f"{k.removeprefix('method.')}={f[k]}" for k in sorted(column_keys[r.method]) if k in f
        )


def _size_order(model: str) -> tuple:
    return (0, model_size(model), model) if model in MODEL_NAMES else (1, 0, model)


def _row_order(row: Row) -> tuple:
    dataset = DATASET_ORDER.index(row.dataset) if row.dataset in DATASET_ORDER else len(DATASET_ORDER)
    return (dataset, row.dataset, _size_order(row.teacher), _size_order(row.student), row.setting)


def _column_order(column: str) -> tuple:
    method, _, options = column.partition(" [")
    rank = METHOD_ORDER.index(method) if method in METHOD_ORDER else len(METHOD_ORDER)
    return (rank, method, options)


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
    rows = sorted({row for row, _ in cells}, key=_row_order)
    columns = sorted({column for _, column in cells}, key=_column_order)
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
        accs = []
        while f"head{len(accs) + 1}/acc" in stage:
            accs.append(stage[f"head{len(accs) + 1}/acc"])
        if not accs:
            continue
        kind = str((r.config.get("method") or {}).get("heads", "linear"))
        teacher_acc = r.stages.get("teacher", {}).get("test/acc_last")
        group = groups[(r.dataset, r.teacher, kind, r.setting, r.title)]
        group[stage.get("key", str(r.path))] = (accs, teacher_acc)
    results = []
    for (dataset, teacher, kind, setting, title), found in groups.items():
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
            )
        )
    return sorted(results, key=lambda h: (_row_order(Row(h.dataset, h.teacher, "", h.setting)), h.kind))


# ----------------------------------------------------------------------------------------------- curves


def _read_lines(path: Path, stage: str | None = None) -> list[dict]:
    lines = []
    for text in path.read_text().splitlines():
        try:
            line = json.loads(text)
        except json.JSONDecodeError:
            continue  # a line cut short by a kill
        if stage is None or line.get("stage") == stage:
            lines.append(line)
    return lines


def student_curve(record: RunRecord) -> list[tuple[int, float]] | None:
    """(epoch, student test accuracy) per epoch: from the artifact store, else from the run's own
    metrics.jsonl (which holds the epochs trained in that run); None when neither is found."""
    key = record.stages.get("student", {}).get("key")
    if key is None:
        return None
    lines = None
    for store in artifact_stores(record.path, record.config):
        if (store / key / "metrics.jsonl").is_file():
            lines = _read_lines(store / key / "metrics.jsonl")
            break
    if lines is None and (record.path / "metrics.jsonl").is_file():
        lines = _read_lines(record.path / "metrics.jsonl", stage="student")
    points = [
        (int(x["epoch"]), float(x["test/acc"])) for x in lines or [] if "test/acc" in x and "epoch" in x
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
