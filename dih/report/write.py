"""The results of a sweep: every run under a directory -> the paper's table (Markdown and CSV) and plots.

    python -m dih.report multirun/2026-11-21/22-24-00          # writes multirun/.../report/
    python -m dih.report outputs --out results                 # any tree of run directories

A run directory is one with the ``config.yaml`` that ``dih.pipeline.run`` writes; beside it ``summary.json``
(finished), ``failed.json`` (failed) or neither (running or killed). Failed and unfinished runs are listed
in the report, never dropped. Rows are (data set, teacher, student), columns are methods in the paper's
order, cells the mean +- sample std of the student's test accuracy over seeds; then each method's paired
difference against CE and KD (and any column ``--against`` names) over the seeds both have, with its 95% t
interval (dih/report/paired.py). A data set is named as a reader knows
it: dataset.label, else an image folder's directory name.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

from dih.errors import UserError, command
from dih.report import paired
from dih.report.results import (
    VARIANT_TITLES,
    HeadsResult,
    RunRecord,
    Table,
    TargetsResult,
    curves,
    gather,
    heads,
    tables,
    targets,
)
from dih.store.fs_errors import cannot_write

# ----------------------------------------------------------------------------------------------- writing


def write_csv(found: list[Table], path: Path) -> None:
    """One line per (data set, teacher, student, setting, method, variant)."""
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(
            ["dataset", "teacher", "student", "setting", "method", "variant", "mean", "std", "n", "seeds"]
        )
        for t in found:
            for row in t.rows:
                for column in t.columns:
                    cell = t.cell(row, column)
                    if cell is None:
                        continue
                    std = "" if cell.std is None else f"{cell.std:.4f}"
                    seeds = " ".join(str(s) for s in cell.seeds)
                    names = [row.title or row.dataset, row.teacher, row.student, row.setting]
                    writer.writerow([*names, column, t.variant, f"{cell.mean:.4f}", std, cell.n, seeds])


def _markdown_table(header: list[str], lines: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(cell.replace("|", "\\|") for cell in line) + " |" for line in lines]
    return out


def markdown(
    directory: Path,
    records: list[RunRecord],
    found: list[Table],
    head_results: list[HeadsResult],
    notes: list[str],
    differences: list[paired.Paired] = (),
    target_results: list[TargetsResult] = (),
) -> str:
    """results.md: the tables, then every run that is not in them, the heads, the plots."""
    counts = {s: sum(r.status == s for r in records) for s in ("done", "failed", "unfinished")}
    out = [
        f"# Results of {directory}",
        "",
        f"{len(records)} runs: {counts['done']} finished, {counts['failed']} failed, "
        f"{counts['unfinished']} unfinished. Cells: mean ± sample std (ddof=1) of the student's test "
        "accuracy (%) over seeds, n = number of seeds.",
    ]
    for t in found:
        out += ["", f"## {VARIANT_TITLES[t.variant]}", ""]
        if not t.rows:
            out.append("No finished run has a student yet.")
            continue
        lines = [
            [row.label] + [c.text() if (c := t.cell(row, m)) else "–" for m in t.columns] for row in t.rows
        ]
        out += _markdown_table(["data set / teacher → student", *t.columns], lines)
    out += paired.markdown(list(differences), _markdown_table, paired.unpaired_baselines(records))
    teacher_side = [r for r in records if r.status == "done" and r.accuracy() is None]
    failed = [r for r in records if r.status == "failed"]
    unfinished = [r for r in records if r.status == "unfinished"]
    if failed:
        out += ["", f"## Failed runs ({len(failed)})", ""]
        out += [f"- `{r.path}` ({r.method}, {r.row.label}, seed {r.seed}): {r.error}" for r in failed]
    if unfinished:
        out += ["", f"## Unfinished runs ({len(unfinished)}: still running, or killed)", ""]
        out += [f"- `{r.path}` ({r.method}, {r.row.label}, seed {r.seed})" for r in unfinished]
    if teacher_side:
        out += ["", f"## Runs that stop before the student ({len(teacher_side)}; heads only)", ""]
        out += [
            f"- `{r.path}` ({r.method}, {r.row.label}, stages {', '.join(r.stages)})" for r in teacher_side
        ]
    if head_results:
        depth = max(len(h.heads) for h in head_results)
        out += ["", "## Heads: test accuracy (%) by depth, then the teacher's own classifier", ""]
        lines = [
            [h.label]
            + [f"{a:.2f}" for a in h.heads]
            + ["–"] * (depth - len(h.heads))
            + ["–" if h.teacher_acc is None else f"{h.teacher_acc:.2f}"]
            for h in head_results
        ]
        out += _markdown_table(["teacher", *(f"head {i + 1}" for i in range(depth)), "teacher"], lines)
    if target_results:
        out += [
            "",
            "## How soft the targets were: top probability >= 0.99 (% of images) / entropy ÷ log C",
            "",
            "Each classifier's softmax(z / T) at the students' T, on the training images unaugmented, "
            "as the students measured it (`python -m dih.cohort_stats` on the test set); shallow head first.",
            "",
        ]
        depth = max(len(t.classifiers) for t in target_results)
        lines = [
            [t.heads, f"{t.temperature:g}"]
            + ["–"] * (depth - len(t.classifiers))
            + [f"{share:.1f} / {ent:.3f}" for share, ent in zip(t.one_hot_share, t.entropy, strict=True)]
            for t in target_results
        ]
        names = [f"head {i + 1}" for i in range(depth - 1)] + ["teacher"]
        out += _markdown_table(["heads", "T", *names], lines)
    if notes:
        out += ["", "## Plots", "", *notes]
    return "\n".join(out) + "\n"


def write_report(
    directory: Path | str,
    out: Path | str | None = None,
    against: list[str] = (),
    same_data: dict[str, str] | None = None,
) -> Path:
    """Gather the runs under ``directory`` and write results.md, results.csv and the plots into ``out``;
    ``against``: columns to pair every other column with, beside CE and KD; ``same_data``: data roots that
    hold the same files as another (OLD -> NEW)."""
    directory = Path(directory)
    out = Path(out) if out is not None else directory / "report"
    records = gather(directory, exclude=out, same_data=same_data)
    if not records:
        raise UserError(
            f"No runs found under {directory}: point it at a sweep or outputs directory written by run.py."
        )
    differences = paired.all_paired(records, against)  # first: a wrong --against writes nothing
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file; give a directory for the report (it is made if missing).")
    try:
        _write(directory, out, records, differences)
    except OSError as err:
        raise cannot_write(out, err, "--out") from None
    return out


def _write(directory: Path, out: Path, records: list[RunRecord], differences: list[paired.Paired]) -> None:
    """The report's files into ``out``: the plots, results.csv, paired.csv, results.md."""
    from dih.report import plots as report_plots  # matplotlib only when plotting

    out.mkdir(parents=True, exist_ok=True)
    found = tables(records)
    head_results = heads(records)
    curve_means, missing = curves(records)
    plots = {
        "accuracy.png": report_plots.plot_accuracy(found[0], out / "accuracy.png"),
        "curves.png": report_plots.plot_curves(found[0], curve_means, out / "curves.png"),
        "heads.png": report_plots.plot_heads(head_results, out / "heads.png"),
    }
    notes = []
    for name, written in plots.items():
        if written:
            notes.append(f"![{name}]({name})")
        else:
            (out / name).unlink(missing_ok=True)  # never leave a stale plot of an earlier report
            notes.append(f"- {name}: nothing to plot yet.")
    if missing:
        notes.append(
            f"- curves.png leaves out {missing} finished run(s) whose per-epoch metrics were not found "
            "(artifact store moved?)."
        )
    write_csv(found, out / "results.csv")
    paired.write_csv(differences, out / "paired.csv")
    markdown_text = markdown(directory, records, found, head_results, notes, differences, targets(records))
    (out / "results.md").write_text(markdown_text)


def _same_data(pairs: list[str]) -> dict[str, str]:
    """``--same-data OLD=NEW`` arguments as a mapping; one without ``=`` is refused."""
    out = {}
    for pair in pairs:
        old, sep, new = pair.partition("=")
        if not (sep and old and new):
            raise UserError(f"--same-data takes OLD=NEW (two data roots), not {pair!r}.")
        out[old] = new
    return out


@command
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m dih.report",
        description="Tables (Markdown, CSV) and plots of every run under a directory.",
    )
    parser.add_argument("directory", type=Path, help="a sweep or outputs directory (searched recursively)")
    parser.add_argument(
        "--out", type=Path, default=None, help="where to write the report (default: DIR/report)"
    )
    parser.add_argument(
        "--against",
        action="append",
        default=[],
        metavar="COLUMN",
        help="also pair every column with this one, as the tables name it, e.g. 'dih [loss.alpha=0.1]' "
        "(repeatable; CE and KD always)",
    )
    parser.add_argument(
        "--same-data",
        action="append",
        default=[],
        metavar="OLD=NEW",
        help="the image folder at OLD holds the same files as NEW (moved): their runs share rows and pair "
        "(paths as the runs' summaries record them; repeatable)",
    )
    args = parser.parse_args(argv)
    out = write_report(args.directory, args.out, args.against, _same_data(args.same_data))
    print(f"report written to {out / 'results.md'}")
    return 0
