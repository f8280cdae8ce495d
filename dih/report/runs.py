"""The runs of a sweep, gathered: every run directory under a directory (read as a ``RunDir``), placed in
the tables by its data set, teacher, student, method and seed, and by the settings that tell it apart
(dih/report/settings.py); and the tables' order of rows and columns.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from dih.errors import UserError
from dih.models.zoo import MODEL_NAMES, model_size
from dih.report.settings import data_roots, label_settings
from dih.store.run_dir import RunDir, dataset_title
from dih.train.metrics import BEST_VAL, LAST, MAIN, final

METHOD_ORDER = ("ce", "kd", "fitnets", "takd", "at", "crd", "tofd", "mhkd", "dih")
DATASET_ORDER = ("cifar10", "cifar100", "tiny_imagenet")
VARIANTS = {v: final(MAIN, v) for v in (LAST, BEST_VAL)}  # the student's test accuracy at either epoch
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
    """One run: where it belongs in the table and how it ended (its ``RunDir``)."""

    run: RunDir
    dataset: str
    teacher: str
    student: str
    method: str
    setting: str = ""  # settings that tell this run's row apart from the same pair's other rows
    title: str = ""  # the data set's name for readers, where it is not `dataset`
    options: str = ""  # method settings that tell this run's column apart from the same method's others

    @property
    def path(self) -> Path:
        return self.run.path

    @property
    def status(self) -> str:
        return self.run.status  # "done", "failed" or "unfinished"

    @property
    def error(self) -> str | None:
        return self.run.error

    @property
    def config(self) -> dict:
        return self.run.config

    @property
    def seed(self):
        return self.run.seed

    @property
    def stages(self) -> dict:
        return self.run.stages

    @property
    def row(self) -> Row:
        return Row(self.dataset, self.teacher, self.student, self.setting, self.title)

    @property
    def column(self) -> str:
        return f"{self.method} [{self.options}]" if self.options else self.method

    def accuracy(self, variant: str = LAST) -> float | None:
        """The student's test accuracy at the last or best-validation epoch; None without a student."""
        return self.stages.get("student", {}).get(VARIANTS[variant])


def gather(
    directory: Path | str, exclude: Path | None = None, same_data: dict[str, str] | None = None
) -> list[RunRecord]:
    """Every run under ``directory`` (recursively), finished, failed or unfinished, in table order;
    ``same_data``: data roots that hold the same files as another (OLD -> NEW), so their runs pair."""
    root = Path(directory).resolve()
    if not root.is_dir():
        raise UserError(f"{directory} is not a directory; give the sweep or outputs directory of the runs.")
    skip = exclude.resolve() if exclude is not None else None
    records = []
    for dirpath, dirnames, _ in os.walk(root):
        here = Path(dirpath)
        dirnames[:] = sorted(
            d for d in dirnames if d not in SKIP_DIRS and not ARTIFACT_DIR.match(d) and here / d != skip
        )
        if RunDir.is_run(here) and (record := _record(here)) is not None:
            records.append(record)
    if same_data:
        known = data_roots(records)
        if unknown := sorted(set(same_data) - known):
            raise UserError(
                f"--same-data names {', '.join(unknown)}, which no run's data root is; the runs' roots are: "
                f"{', '.join(sorted(known)) or 'none recorded'}."
            )
    label_settings(records, same_data)
    return sorted(records, key=lambda r: (row_order(r.row), column_order(r.column), str(r.seed), str(r.path)))


def _record(path: Path) -> RunRecord | None:
    """The run in ``path``; None when its config.yaml is not a run's (e.g. the project's conf/)."""
    try:
        run = RunDir.open(path)
        names = run.names()
    except UserError:
        return None
    record = RunRecord(run, **names)
    title = dataset_title(run.config["dataset"])
    record.title = "" if title == record.dataset else title
    return record


def _size_order(model: str) -> tuple:
    return (0, model_size(model), model) if model in MODEL_NAMES else (1, 0, model)


def row_order(row: Row) -> tuple:
    dataset = DATASET_ORDER.index(row.dataset) if row.dataset in DATASET_ORDER else len(DATASET_ORDER)
    return (dataset, row.dataset, _size_order(row.teacher), _size_order(row.student), row.setting)


def column_order(column: str) -> tuple:
    method, _, options = column.partition(" [")
    rank = METHOD_ORDER.index(method) if method in METHOD_ORDER else len(METHOD_ORDER)
    return (rank, method, options)
