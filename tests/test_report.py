"""The sweep report: numbers checked against an independent computation, and one real sweep end to end."""

import csv
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import HANG_S

from dih.report import paired, results
from dih.report import write as report

ROOT = Path(__file__).resolve().parents[1]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SEEDS = (30, 50, 67)


def write_run(
    directory: Path,
    method: str,
    seed: int,
    *,
    dataset: str = "cifar100",
    teacher: str = "res110",
    student: str = "res8",
    last: float | None = None,
    best: float | None = None,
    error: str | None = None,
    heads: list[float] | None = None,
    teacher_acc: float = 70.0,
    config: dict | None = None,
) -> Path:
    """A run directory as the pipeline leaves it: config.yaml, then summary.json, failed.json or neither."""
    directory.mkdir(parents=True)
    cfg = {
        "dataset": {"name": dataset, "root": "./data", "val_fraction": 0.1},
        "teacher": {"name": teacher},
        "student": {"name": student},
        "method": {"name": method, "stages": ["teacher", "student"], "loss": {"alpha": 0.1}},
        "trainer": {"epochs": 3},
        "seed": seed,
        "device": "auto",
        "artifacts": {"root": "artifacts"},
    }
    for group, values in (config or {}).items():
        cfg[group].update(values)
    (directory / "config.yaml").write_text(yaml.safe_dump(cfg))
    if error is not None:
        (directory / "failed.json").write_text(json.dumps({"error": error}))
    if last is None:
        return directory
    student_stage = {"key": f"student-{method}-{seed}-{last}", "reused": False, "test/acc_last": last}
    if best is not None:
        student_stage["test/acc_best_val"] = best
    stages = {"teacher": {"key": f"teacher-{teacher}", "reused": True, "test/acc_last": teacher_acc}}
    if heads is not None:
        stages["heads"] = {"key": f"heads-{teacher}", "reused": True}
        stages["heads"].update({f"head{i + 1}/acc": a for i, a in enumerate(heads)})
    stages["student"] = student_stage
    summary = {"method": method, "dataset": dataset, "teacher": teacher, "student": student, "seed": seed}
    summary |= {"stages": stages, "test/acc_last": last}
    (directory / "summary.json").write_text(json.dumps(summary))
    return directory


@pytest.fixture
def sweep(tmp_path: Path) -> dict:
    """A hand-made sweep: known accuracies per (pair, method, seed), a failed and an unfinished run."""
    root = tmp_path / "sweep"
    accs = {
        ("cifar100", "res110", "res8", "dih"): [61.2, 60.1, 62.9],
        ("cifar100", "res110", "res8", "kd"): [59.0, 58.1, 60.5],
        ("cifar100", "res110", "res8", "ce"): [57.3, 58.8, 56.0],
        ("cifar100", "res110", "res8", "crd"): [60.0, 61.5, 59.7],
        ("cifar100", "res110", "res8", "mynew"): [50.5],
        ("cifar100", "res20", "res8", "kd"): [58.0, 57.5],
        ("cifar10", "res110", "res8", "kd"): [88.1, 87.2, 88.8],
    }
    i = 0
    for (dataset, teacher, student, method), values in accs.items():
        for seed, acc in zip(SEEDS, values):
            heads = [30.0, 45.0, 60.0] if method == "dih" else None
            run = write_run(
                root / f"{i}_{method}_{teacher}_{student}_s{seed}",
                method,
                seed,
                dataset=dataset,
                teacher=teacher,
                student=student,
                last=acc,
                best=acc - 1.0 if dataset == "cifar100" else None,  # cifar10 as with val_fraction=0
                heads=heads,
            )
            (run / ".hydra").mkdir()
            (run / ".hydra" / "config.yaml").write_text("defaults: []\n")  # never a run of its own
            i += 1
    failed = write_run(root / "90_dih_res110_res8_s99", "dih", 99, error="RuntimeError: CUDA out of memory")
    unfinished = write_run(root / "91_kd_res110_res8_s99", "kd", 99)
    (tmp_path / "sweep" / "conf").mkdir()
    (tmp_path / "sweep" / "conf" / "config.yaml").write_text("defaults:\n  - dataset: cifar100\n")
    return {"root": root, "accs": accs, "failed": failed, "unfinished": unfinished}


def test_table_matches_an_independent_computation(sweep):
    records = results.gather(sweep["root"])
    assert len(records) == sum(len(v) for v in sweep["accs"].values()) + 2
    assert {r.status for r in records} == {"done", "failed", "unfinished"}
    last = results.table(records, "last")
    for (dataset, teacher, student, method), values in sweep["accs"].items():
        cell = last.cell(results.Row(dataset, teacher, student), method)
        assert cell is not None and cell.n == len(values)
        assert cell.mean == pytest.approx(statistics.mean(values))
        if len(values) > 1:
            assert cell.std == pytest.approx(statistics.stdev(values))
            assert "±" in cell.text()
        else:
            assert cell.std is None and "±" not in cell.text() and "(n=1)" in cell.text()
    # The paper's column order, unknown methods after; rows by data set, then teacher size.
    assert last.columns == ["ce", "kd", "crd", "dih", "mynew"]
    assert [(r.dataset, r.teacher) for r in last.rows] == [
        ("cifar10", "res110"),
        ("cifar100", "res20"),
        ("cifar100", "res110"),
    ]
    best = results.table(records, "best_val")
    assert [r.dataset for r in best.rows] == ["cifar100", "cifar100"]  # cifar10 has no validation split
    cell = best.cell(results.Row("cifar100", "res110", "res8"), "dih")
    dih = sweep["accs"][("cifar100", "res110", "res8", "dih")]
    assert cell.mean == pytest.approx(statistics.mean(a - 1.0 for a in dih))


def test_duplicates_count_once_and_differing_settings_split(tmp_path):
    root = tmp_path / "sweep"
    for seed, acc in zip(SEEDS, (60.0, 62.0, 64.0)):
        write_run(root / f"kd_s{seed}", "kd", seed, last=acc)
    write_run(root / "again" / "kd_s30", "kd", 30, last=60.0)  # the same student artifact, found twice
    write_run(root / "alpha" / "kd_s30", "kd", 30, last=50.0, config={"method": {"loss": {"alpha": 0.5}}})
    write_run(root / "long" / "kd_s30", "kd", 30, last=70.0, config={"trainer": {"epochs": 9}})
    t = results.table(results.gather(root))
    row = results.Row("cifar100", "res110", "res8", "trainer.epochs=3")
    assert t.cell(row, "kd [loss.alpha=0.1]").values == [60.0, 62.0, 64.0]
    assert t.cell(row, "kd [loss.alpha=0.5]").values == [50.0]
    assert t.cell(results.Row("cifar100", "res110", "res8", "trainer.epochs=9"), "kd [loss.alpha=0.1]").n == 1


def test_heads_and_curves_from_the_artifact_store(sweep):
    records = results.gather(sweep["root"])
    (found,) = results.heads(records)
    assert (found.dataset, found.teacher, found.kind) == ("cifar100", "res110", "linear")
    assert found.heads == [30.0, 45.0, 60.0] and found.teacher_acc == 70.0
    # Relative artifacts.root is found beside the sweep; one run's metrics are missing.
    store = sweep["root"].parent / "artifacts"
    dih_runs = [r for r in records if r.method == "dih" and r.status == "done"]
    for r, start in zip(dih_runs, (10.0, 20.0)):
        path = store / r.stages["student"]["key"] / "metrics.jsonl"
        path.parent.mkdir(parents=True)
        path.write_text("".join(json.dumps({"epoch": e, "test/acc": start + e}) + "\n" for e in (1, 2)))
    means, missing = results.curves(records)
    assert means[(results.Row("cifar100", "res110", "res8"), "dih")] == [(1, 16.0), (2, 17.0)]
    assert missing == sum(r.status == "done" for r in records) - 2


def test_markdown_and_csv(sweep, tmp_path):
    out = tmp_path / "out"
    assert report.main([str(sweep["root"]), "--out", str(out)]) == 0
    md = (out / "results.md").read_text()
    header = next(line for line in md.splitlines() if line.startswith("| data set"))
    assert [c.strip() for c in header.strip("|").split("|")][1:] == ["ce", "kd", "crd", "dih", "mynew"]
    assert "at the epoch of best validation accuracy" in md
    assert str(sweep["failed"]) in md and "CUDA out of memory" in md
    assert str(sweep["unfinished"]) in md
    assert "| cifar100 / res110 (linear heads) | 30.00 | 45.00 | 60.00 | 70.00 |" in md
    with (out / "results.csv").open() as f:
        lines = list(csv.DictReader(f))
    assert len(lines) == len(sweep["accs"]) + 6  # every cell at last, and the six cifar100 ones at best_val
    for (dataset, teacher, student, method), values in sweep["accs"].items():
        (line,) = [
            x
            for x in lines
            if (x["dataset"], x["teacher"], x["student"], x["method"], x["variant"])
            == (dataset, teacher, student, method, "last")
        ]
        assert float(line["mean"]) == pytest.approx(statistics.mean(values), abs=1e-4)
        assert line["std"] == ("" if len(values) == 1 else f"{statistics.stdev(values):.4f}")
        assert int(line["n"]) == len(values)
        assert line["seeds"].split() == [str(s) for s in SEEDS[: len(values)]]
    assert (out / "accuracy.png").read_bytes().startswith(PNG_MAGIC)
    assert (out / "heads.png").read_bytes().startswith(PNG_MAGIC)
    assert not (out / "curves.png").exists()  # no artifact store: said so instead
    assert "curves.png: nothing to plot yet" in md


def test_paired_differences_match_a_hand_computation(sweep, tmp_path):
    found = {(p.column, p.baseline, p.variant): p for p in paired.all_paired(results.gather(sweep["root"]))}
    row = results.Row("cifar100", "res110", "res8")
    # dih - ce per seed: 61.2-57.3, 60.1-58.8, 62.9-56.0 = 3.9, 1.3, 6.9; mean 4.0333, sample std 2.8024
    dih_ce = found[("dih", "ce", "last")]
    assert dih_ce.row == row and dih_ce.seeds == [30, 50, 67]
    assert dih_ce.diffs == pytest.approx([3.9, 1.3, 6.9])
    assert dih_ce.mean == pytest.approx(4.0333, abs=1e-4) and dih_ce.std == pytest.approx(2.8024, abs=1e-4)
    # kd - ce: 1.7, -0.7, 4.5; mean 1.8333, sample std 2.6026; best_val shifts both by -1: the same
    for variant in ("last", "best_val"):
        kd_ce = found[("kd", "ce", variant)]
        assert kd_ce.mean == pytest.approx(1.8333, abs=1e-4) and kd_ce.std == pytest.approx(2.6026, abs=1e-4)
    # dih - kd: 2.2, 2.0, 2.4; mean 2.2, sample std 0.2
    dih_kd = found[("dih", "kd", "last")]
    assert dih_kd.mean == pytest.approx(2.2) and dih_kd.std == pytest.approx(0.2)
    mynew = found[("mynew", "ce", "last")]  # one seed (30): 50.5 - 57.3, no spread
    assert mynew.diffs == pytest.approx([-6.8]) and mynew.std is None and "±" not in mynew.text()
    # CE is never compared (KD against CE says it); rows without CE (cifar10, res20) have no pairs at all
    assert not any(p.column == "ce" for p in found.values())
    assert {p.row for p in found.values()} == {row}
    out = tmp_path / "out"
    report.write_report(sweep["root"], out)
    md = (out / "results.md").read_text()
    assert (
        "### Against CE, at the last epoch" in md and "### Against KD, at the epoch of best validation" in md
    )
    # the 95% t interval: mean +- t(0.975, 2 d.o.f.) = 4.303 (a printed table's) x std / sqrt(3)
    half = 4.303 * 2.8024 / 3**0.5
    assert dih_ce.interval == (
        pytest.approx(4.0333 - half, abs=2e-3),
        pytest.approx(4.0333 + half, abs=2e-3),
    )
    assert "+4.03 ± 2.80 (n=3; -2.93 to +10.99)" in md and "-6.80 (n=1)" in md
    with (out / "paired.csv").open() as f:
        lines = {(x["method"], x["baseline"], x["variant"]): x for x in csv.DictReader(f)}
    assert lines[("dih", "kd", "best_val")]["mean_diff"] == "2.2000"
    assert lines[("dih", "kd", "best_val")]["std_diff"] == "0.2000"
    half = 4.303 * 0.2 / 3**0.5  # dih - kd: 2.2 +- 0.4968
    assert float(lines[("dih", "kd", "best_val")]["ci95_low"]) == pytest.approx(2.2 - half, abs=1e-3)
    assert float(lines[("dih", "kd", "best_val")]["ci95_high"]) == pytest.approx(2.2 + half, abs=1e-3)
    assert lines[("mynew", "ce", "last")]["ci95_low"] == ""  # one seed: no interval


def test_any_column_can_be_the_baseline(sweep, tmp_path):
    """--against crd pairs every other column but CE and KD (already compared with crd) with crd."""
    records = results.gather(sweep["root"])
    found = {(p.column, p.baseline, p.variant): p for p in paired.all_paired(records, ["crd"])}
    # dih - crd per seed: 61.2-60.0, 60.1-61.5, 62.9-59.7 = 1.2, -1.4, 3.2; mean 1.0, sample std 2.3065
    dih_crd = found[("dih", "crd", "last")]
    assert dih_crd.diffs == pytest.approx([1.2, -1.4, 3.2])
    assert dih_crd.mean == pytest.approx(1.0) and dih_crd.std == pytest.approx(2.3065, abs=1e-4)
    assert found[("mynew", "crd", "last")].diffs == pytest.approx([-9.5])
    assert {c for c, b, _ in found if b == "crd"} == {"dih", "mynew"}
    assert ("crd", "kd", "last") in found and ("crd", "ce", "last") in found  # CE and KD as before
    out = tmp_path / "out"
    assert report.main([str(sweep["root"]), "--out", str(out), "--against", "crd"]) == 0
    assert "### Against crd, at the last epoch" in (out / "results.md").read_text()


def test_an_unknown_baseline_is_refused_naming_the_columns(sweep, tmp_path, capsys):
    out = tmp_path / "out"
    assert report.main([str(sweep["root"]), "--out", str(out), "--against", "dih [loss.alpha=9]"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--against 'dih [loss.alpha=9]'" in err
    assert "'ce', 'kd', 'crd', 'dih', 'mynew'" in err
    assert not out.exists()  # refused before anything is written


def test_only_seeds_both_methods_have_are_paired(tmp_path):
    root = tmp_path / "sweep"
    for seed, acc in ((30, 50.0), (50, 52.0)):
        write_run(root / f"ce_s{seed}", "ce", seed, last=acc)
    for seed, acc in ((50, 55.0), (67, 99.0)):
        write_run(root / f"dih_s{seed}", "dih", seed, last=acc)
    (only,) = paired.paired(results.gather(root))
    assert (only.column, only.baseline, only.seeds, only.diffs) == ("dih", "ce", [50], [3.0])


def test_a_folder_data_set_is_named_by_its_label_or_directory(tmp_path):
    root = tmp_path / "sweep"
    folder = {"name": "folder", "root": "/data/flowers102", "label": None}
    write_run(root / "a", "kd", 30, dataset="folder", last=60.0, config={"dataset": folder})
    labelled = {**folder, "root": "/data/pets", "label": "Oxford Pets"}
    write_run(root / "b", "kd", 30, dataset="folder", last=61.0, config={"dataset": labelled})
    write_run(root / "c", "kd", 30, dataset="cifar10", last=62.0, config={"dataset": {"label": None}})
    records = results.gather(root)
    assert sorted(r.row.label.split(" / ")[0] for r in records) == ["Oxford Pets", "cifar10", "flowers102"]
    assert not any("label" in r.setting for r in records)  # a name, never a setting that splits rows
    out = tmp_path / "out"
    report.write_report(root, out)
    md = (out / "results.md").read_text()
    assert "| flowers102 / res110 → res8" in md and "| Oxford Pets / res110 → res8" in md
    assert "folder /" not in md
    with (out / "results.csv").open() as f:
        assert sorted(x["dataset"] for x in csv.DictReader(f)) == ["Oxford Pets", "cifar10", "flowers102"]


def test_empty_directory_is_a_one_sentence_error(tmp_path, capsys):
    assert report.main([str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: No runs found") and err.count(". ") == 0 and "\n" not in err
    assert not (tmp_path / "report").exists()


def test_an_out_that_cannot_be_written_is_a_one_sentence_error(tmp_path, read_only_dir, capsys):
    """--out in a read-only place or onto a file: the path and the fix, exit 2, never a traceback."""
    write_run(tmp_path / "runs" / "kd_s30", "kd", 30, last=60.0)
    for out, says in (
        (read_only_dir / "report", f"Cannot write {read_only_dir / 'report'} ("),
        (tmp_path / "runs" / "kd_s30" / "config.yaml", "is a file; give a directory for the report"),
    ):
        assert report.main([str(tmp_path / "runs"), "--out", str(out)]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and says in err and "--out" in err, err
        assert err.count(". ") == 0 and "\n" not in err, err
    assert report.main([str(tmp_path / "runs"), "--out", str(tmp_path / "report")]) == 0  # and a good one


def _python(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "WANDB_MODE": "offline"}
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=HANG_S
    )


@pytest.mark.slow
def test_real_sweep_end_to_end(tmp_path):
    sweep = tmp_path / "sweep"
    proc = _python(
        str(ROOT / "run.py"),
        "--multirun",
        "experiment=smoke",
        "dataset.train_size=100",
        "dataset.test_size=50",
        "dataset.image_size=16",
        "trainer.batch_size=50",
        "teacher=res8",
        "student=res8",
        "method=kd,dih",
        "seed=30,50",
        f"artifacts.root={tmp_path / 'artifacts'}",
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    proc = _python("-m", "dih.report", str(sweep), cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    out = sweep / "report"
    md = (out / "results.md").read_text()
    header, _, row = [line for line in md.splitlines() if line.startswith("|")][:3]
    assert [c.strip() for c in header.strip("|").split("|")][1:] == ["kd", "dih"]
    assert row.startswith("| synthetic / res8 → res8 |") and row.count("(n=2)") == 2
    for name in ("accuracy.png", "curves.png", "heads.png"):
        data = (out / name).read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 10_000, name
    with (out / "results.csv").open() as f:
        assert {(x["method"], x["n"]) for x in csv.DictReader(f)} == {("kd", "2"), ("dih", "2")}

    empty = tmp_path / "empty"
    empty.mkdir()
    proc = _python("-m", "dih.report", str(empty), cwd=ROOT)
    assert proc.returncode == 2
    err = proc.stderr.strip()
    assert err.startswith("error: No runs found") and len(err.splitlines()) == 1
    assert proc.stdout == ""


def test_runs_made_differently_never_share_a_row_nor_a_pair(tmp_path):
    """CE at 15 epochs and KD at 30 vary nothing within their own method, yet are not one setting."""
    root = tmp_path / "sweep"
    for seed in SEEDS:
        ce = {"trainer": {"epochs": 15}}
        write_run(root / f"ce_s{seed}", "ce", seed, last=50.0 + seed / 100, config=ce)
        write_run(root / f"kd_s{seed}", "kd", seed, last=60.0, config={"trainer": {"epochs": 30}})
    records = results.gather(root)
    assert {r.row.setting for r in records} == {"trainer.epochs=15", "trainer.epochs=30"}
    assert paired.all_paired(records) == []  # no KD - CE across two schedules


def test_a_seed_run_twice_counts_once_in_the_table_as_in_the_pairs(tmp_path):
    root = tmp_path / "sweep"
    write_run(root / "kd_s30_a", "kd", 30, last=50.0)
    write_run(root / "kd_s30_b", "kd", 30, last=52.0)  # another student key: made again, elsewhere
    write_run(root / "kd_s50", "kd", 50, last=55.0)
    write_run(root / "ce_s30", "ce", 30, last=49.0)
    write_run(root / "ce_s50", "ce", 50, last=50.0)
    records = results.gather(root)
    cell = results.table(records).cell(results.Row("cifar100", "res110", "res8"), "kd")
    assert (cell.n, cell.seeds, cell.values) == (2, [30, 50], [51.0, 55.0])
    (kd_ce,) = paired.paired(records)
    assert kd_ce.diffs == [2.0, 5.0]  # each seed's mean, as the table's


def test_a_sweep_without_plain_kd_says_what_to_pair_against(tmp_path):
    root = tmp_path / "sweep"
    for seed in SEEDS:
        write_run(root / f"ce_s{seed}", "ce", seed, last=50.0)
        for t in (4, 5):
            cfg = {"method": {"loss": {"alpha": 0.1, "temperature": t}}}
            write_run(root / f"kd{t}_s{seed}", "kd", seed, last=55.0 + t, config=cfg)
    out = tmp_path / "out"
    report.write_report(root, out)
    md = (out / "results.md").read_text()
    assert "### Against KD" not in md
    assert "nothing is paired against KD; pass --against 'kd [loss.temperature=4]'" in md
    assert report.main([str(root), "--out", str(out), "--against", "kd [loss.temperature=4]"]) == 0
    assert "### Against kd [loss.temperature=4], at the last epoch" in (out / "results.md").read_text()


def write_planned_run(directory: Path, last: float, *overrides: str, workers: int = 4) -> Path:
    """A finished run as the pipeline leaves it, its config and stage identities from the real plan of
    ``overrides`` (nothing trained: the student's accuracy is ``last``); ``workers``: a trainer setting in
    no key that this project does not have (yet), as a later version's config would hold it."""
    from omegaconf import OmegaConf

    from dih.config.compose import compose_run
    from dih.plan.chain import plan_run

    cfg = compose_run(["experiment=smoke", "method=kd", "teacher=res14", *overrides])
    directory.mkdir(parents=True)
    config = OmegaConf.to_container(cfg, resolve=True)
    config["trainer"]["workers"] = workers
    (directory / "config.yaml").write_text(yaml.safe_dump(config))
    stages = {
        p.name: {"key": p.spec.key, "identity": p.spec.identity(), "reused": False, "test/acc_last": last}
        for p in plan_run(cfg)
    }
    summary = {"method": cfg.method.name, "seed": cfg.seed, "stages": stages, "test/acc_last": last}
    (directory / "summary.json").write_text(json.dumps(summary))
    return directory


def test_runs_are_told_apart_by_their_identities(tmp_path):
    """Settings in no key (trainer.progress, logger, a new one the report never heard of) never split a row
    when the identities show it; a setting in a key splits its column or row as it always did."""
    root = tmp_path / "sweep"
    write_planned_run(root / "a_s30", 60.0, "seed=30")
    write_planned_run(root / "a_s50", 62.0, "seed=50", "trainer.progress=true", "logger=wandb")
    write_planned_run(root / "b_s30", 61.0, "seed=30", workers=8)  # in no key, in no list
    write_planned_run(root / "t4_s30", 50.0, "seed=30", "method.loss.temperature=4")
    write_planned_run(root / "e3_s30", 40.0, "seed=30", "trainer.epochs=3")
    t = results.table(results.gather(root))
    row = results.Row("synthetic", "res14", "res8", "trainer.epochs=2")
    # b_s30 made the same student artifact as a_s30 (its key the same): one value for seed 30
    assert t.cell(row, "kd [loss.temperature=5.0]").values == [60.0, 62.0]
    assert t.cell(row, "kd [loss.temperature=4]").values == [50.0]
    assert t.cell(results.Row("synthetic", "res14", "res8", "trainer.epochs=3"), "kd [loss.temperature=5.0]")
    assert len(t.rows) == 2 and len(t.columns) == 2

    # Summaries written before identities were recorded: the rule before them, which never heard of it.
    for run in root.iterdir():
        summary = json.loads((run / "summary.json").read_text())
        for stage in summary["stages"].values():
            del stage["identity"]
        (run / "summary.json").write_text(json.dumps(summary))
    settings = {r.row.setting for r in results.gather(root)}
    assert settings == {f"trainer.epochs={e}, trainer.workers={w}" for e, w in ((2, 4), (2, 8), (3, 4))}


def test_the_same_images_moved_pair_only_when_the_reader_says_so(tmp_path, capsys):
    """An image folder is known by its path: the same files at another path are another data set (their
    runs split by dataset.root) until ``--same-data OLD=NEW`` says they are one; a root no run has is
    refused, naming the roots the runs have."""
    root, out = tmp_path / "sweep", tmp_path / "report"
    old, new = tmp_path / "old" / "images", tmp_path / "new" / "images"
    write_planned_run(root / "a_s30", 60.0, "seed=30", "dataset=folder", f"dataset.root={old}")
    write_planned_run(root / "b_s50", 62.0, "seed=50", "dataset=folder", f"dataset.root={new}")
    write_planned_run(root / "c_s50", 50.0, "seed=50", "dataset=folder", f"dataset.root={new}", "method=ce")
    write_planned_run(root / "d_s30", 52.0, "seed=30", "dataset=folder", f"dataset.root={old}", "method=ce")

    apart = results.gather(root)
    assert {r.row.setting for r in apart} == {f"dataset.root={old}", f"dataset.root={new}"}
    assert all(p.n == 1 for p in paired.all_paired(apart))

    together = results.gather(root, same_data={str(old): str(new)})
    assert {r.row.setting for r in together} == {""}
    (row,) = results.table(together).rows
    assert results.table(together).cell(row, "kd").values == [60.0, 62.0]
    (kd_vs_ce,) = [p for p in paired.all_paired(together) if p.column == "kd" and p.variant == "last"]
    assert kd_vs_ce.n == 2 and kd_vs_ce.mean == pytest.approx(10.0)

    assert report.main([str(root), "--out", str(out), "--same-data", f"{old}={new}"]) == 0
    assert "(n=2)" in (out / "results.md").read_text()
    assert report.main([str(root), "--out", str(out), "--same-data", f"{tmp_path / 'elsewhere'}={new}"]) == 2
    err = capsys.readouterr().err
    assert "no run's data root is" in err and str(old) in err and str(new) in err
