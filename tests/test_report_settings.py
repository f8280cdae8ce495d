"""Which runs share a row, a column and a pair in the report: the settings that tell them apart, the stages'
identities that show a setting to be in no key, a seed found twice, and the same images at another path."""

import json

import pytest
from run_dirs import write_planned_run, write_run

from dih.report import paired, results
from dih.report import write as report

SEEDS = (30, 50, 67)


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
