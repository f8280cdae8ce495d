"""Promises no other test held: the best-validation epoch is chosen by validation accuracy, never test;
a run that fails at run time leaves failed.json (and a later good run in the same directory clears it)."""

import json
from pathlib import Path

import pytest
from conftest import run_cli, summary, write_image_folder

from dih.train.engine import summarize

pytestmark = pytest.mark.usefixtures("one_thread_runs")

# --- best-validation selection ------------------------------------------------------------------------


def line(epoch: int, val: float, test: float, heads: list[tuple[float, float]] = ()) -> dict:
    """One epoch's metrics line; ``heads``: (val, test) accuracy of each head."""
    out = {"stage": "x", "epoch": epoch, "time/epoch_s": 1.0, "time/images_per_s": 100.0}
    for i, (head_val, head_test) in enumerate(heads, start=1):
        out[f"head{i}/val_acc"], out[f"head{i}/test_acc"] = head_val, head_test
    out["val/acc"], out["test/acc"] = val, test
    return out


def test_best_val_epoch_is_chosen_by_validation_not_test():
    # Best val at epoch 2; best test at epoch 4 (the last); epoch 3 has the second-best val.
    history = [line(1, 30, 20), line(2, 70, 40), line(3, 60, 50), line(4, 50, 90)]
    s = summarize(history)
    assert s["best_val_epoch"] == 2
    assert s["val/acc_best"] == 70
    assert s["test/acc_best_val"] == 40
    assert s["test/acc_last"] == 90
    assert s["epochs"] == 4


def test_best_val_ties_go_to_the_first_epoch_reaching_it():
    history = [line(1, 10, 10), line(2, 60, 30), line(3, 60, 80), line(4, 60, 70), line(5, 40, 20)]
    s = summarize(history)
    assert s["best_val_epoch"] == 2
    assert s["test/acc_best_val"] == 30
    assert s["test/acc_last"] == 20


def test_heads_take_the_stage_best_val_epoch():
    # A heads stage: val/acc is the mean of the heads'; every head's val peaks at epoch 3 with the mean,
    # while each head's test accuracy peaks elsewhere (epoch 2 or 4).
    heads_by_epoch = [
        [(10, 11), (20, 21), (30, 31)],
        [(30, 80), (40, 85), (50, 90)],
        [(50, 40), (60, 45), (70, 50)],
        [(45, 60), (55, 95), (65, 99)],
    ]
    history = [
        line(e, sum(v for v, _ in hs) / 3, sum(t for _, t in hs) / 3, hs)
        for e, hs in enumerate(heads_by_epoch, start=1)
    ]
    s = summarize(history)
    assert s["best_val_epoch"] == 3
    assert s["test/acc_best_val"] == 45
    assert [s[f"head{i}/acc_best_val"] for i in (1, 2, 3)] == [40, 45, 50]
    assert [s[f"head{i}/acc"] for i in (1, 2, 3)] == [60, 95, 99]  # the last epoch


def test_without_validation_only_the_last_epoch_is_reported():
    history = [{k: v for k, v in line(e, 0, t).items() if k != "val/acc"} for e, t in ((1, 50), (2, 40))]
    s = summarize(history)
    assert s["test/acc_last"] == 40
    assert "test/acc_best_val" not in s and "best_val_epoch" not in s


@pytest.mark.slow
def test_run_summary_reports_test_accuracy_at_the_best_val_epoch(tmp_path):
    """Every stage of a real DIH run: the summary's best-val figures are those of the first metrics line
    with the highest val/acc; the run's top-level figures are the student's."""
    run_cli(tmp_path, "method=dih", "trainer.epochs=6", "trainer.milestones=[3]")
    s = summary(tmp_path)
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert list(s["stages"]) == ["teacher", "heads", "student"]
    for stage, got in s["stages"].items():
        history = [h for h in lines if h["stage"] == stage]
        assert [h["epoch"] for h in history] == [1, 2, 3, 4, 5, 6], stage
        best = max(history, key=lambda h: h["val/acc"])  # max() keeps the first of equals
        assert got["best_val_epoch"] == best["epoch"], stage
        assert got["test/acc_best_val"] == best["test/acc"], stage
        assert got["test/acc_last"] == history[-1]["test/acc"], stage
        for k in (k for k in best if k.endswith("/test_acc")):
            assert got[k.replace("/test_acc", "/acc_best_val")] == best[k], (stage, k)
    student = [h for h in lines if h["stage"] == "student"]
    best = max(student, key=lambda h: h["val/acc"])
    assert s["test/acc_best_val"] == best["test/acc"]
    assert s["test/acc_last"] == student[-1]["test/acc"]


# --- failed.json ------------------------------------------------------------------------------------


def assert_failed(proc, run_dir: Path, expected: str) -> None:
    assert proc.returncode == 2, proc.stdout[-3000:]
    errors = [x for x in proc.stdout.splitlines() if x.startswith("error:")]
    assert len(errors) == 1, proc.stdout[-3000:]
    assert expected in errors[0]
    assert "Traceback" not in proc.stdout
    failed = json.loads((run_dir / "failed.json").read_text())
    assert errors[0].removeprefix("error: ") in failed["error"]
    assert not (run_dir / "summary.json").exists()


def assert_recovered(proc, run_dir: Path) -> None:
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert (run_dir / "summary.json").exists()
    assert not (run_dir / "failed.json").exists(), "a good run in the same directory clears failed.json"


@pytest.mark.slow
def test_non_finite_loss_leaves_failed_json_then_a_good_run_clears_it(tmp_path):
    bad = run_cli(tmp_path, "stage=teacher", "trainer.lr=1e30", check=False)
    assert_failed(bad, tmp_path / "run", "loss became")
    assert "epoch 1" in bad.stdout

    good = run_cli(tmp_path, "stage=teacher", check=False)
    assert_recovered(good, tmp_path / "run")
    assert summary(tmp_path)["stages"]["teacher"]["epochs"] == 2


def test_the_non_finite_loss_sentence_says_what_a_rerun_does(tmp_path):
    """A lower trainer.lr is a new key, so nothing resumes (the message said it resumed from the last good
    epoch): it says the stages the change reaches train again from their first epoch."""
    import torch

    from dih.data import load_data
    from dih.errors import UserError
    from dih.losses.ce import CELoss
    from dih.models import build_model
    from dih.train.engine import Recipe, Task, fit

    tiny = {"name": "synthetic", "num_classes": 2, "image_size": 8, "train_size": 16, "test_size": 4}
    data = load_data(tiny)
    task = Task(build_model("res8", data.num_classes), CELoss())
    recipe = Recipe(epochs=1, lr=1e30, milestones=(), batch_size=8)
    with pytest.raises(UserError) as info:
        fit(task, data, recipe, torch.device("cpu"), tmp_path, seed=1, stage="teacher", progress=False)
    message = str(info.value)
    assert message.startswith("The teacher loss became") and "\n" not in message
    assert "resumes" not in message and "last good epoch" not in message
    assert "new artifact key" in message and "from its first epoch" in message


@pytest.mark.slow
def test_missing_data_set_leaves_failed_json_then_a_good_run_clears_it(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    overrides = [
        "dataset=folder",
        f"dataset.root={data}",
        "teacher=res8",
        "stage=teacher",
        "trainer.epochs=1",
        "trainer.milestones=[1]",
        "trainer.batch_size=8",
    ]
    bad = run_cli(tmp_path, *overrides, check=False, tiny=False)
    assert_failed(bad, tmp_path / "run", str(data))

    write_image_folder(data)
    good = run_cli(tmp_path, *overrides, check=False, tiny=False)
    assert_recovered(good, tmp_path / "run")
