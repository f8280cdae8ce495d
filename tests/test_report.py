"""The sweep report: numbers checked against an independent computation, and one real sweep end to end."""

import csv
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import HANG_S
from run_dirs import write_run

from dih.report import paired, results
from dih.report import write as report

ROOT = Path(__file__).resolve().parents[1]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SEEDS = (30, 50, 67)


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
