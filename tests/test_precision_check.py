"""The bf16 check evaluates the run's real cohort (its bf16 figures are the heads stage's own), times the
teacher side in both precisions, and says whether ``auto``'s rule holds on the device."""

import pytest
import torch
from conftest import run_cli, summary

from dih.teacher_side import measure
from dih.teacher_side.measure import BUILD, LIVE, TeacherSideSpeed, UseRates
from dih.teacher_side.precision import bf16_checked
from dih.tools import precision_check
from dih.tools.precision_check import Check, check, main, run_batches, verdict


@pytest.mark.slow
def test_bf16_column_reproduces_the_heads_stage(tmp_path, monkeypatch, capsys):
    run_cli(
        tmp_path, "method=dih", "stage=heads", "teacher_side.bf16=true", "dataset.val_fraction=0",
        "trainer.batch_size=8", "trainer.eval_batch_size=24",
    )  # fmt: skip
    monkeypatch.chdir(tmp_path)
    timed = []  # the batches the one measurement ran at
    spy = lambda *a, **kw: timed.append(a[3]) or measure.teacher_side_speed(*a, **kw)  # noqa: E731
    monkeypatch.setattr(precision_check, "teacher_side_speed", spy)
    c = check(tmp_path / "run", device="cpu", seconds=0.05)
    assert timed == [{LIVE: 8, BUILD: 24}]  # the run's own training and evaluation batches
    assert [(u.use, u.batch_size) for u in c.speed.uses] == [(LIVE, 8), (BUILD, 24)]
    heads = summary(tmp_path)["stages"]["heads"]
    assert [r["classifier"] for r in c.rows] == ["head1", "head2", "head3", "teacher"]
    for i, row in enumerate(c.rows[:-1], 1):
        assert row["bf16"] == pytest.approx(heads[f"head{i}/acc"], abs=1e-4)  # float32 mean vs exact count
        assert 0 <= row["changed"] <= 100 and 0 <= row["fp32"] <= 100
    assert all(u.fp32 > 0 and u.bf16 > 0 for u in c.speed.uses) and c.device.type == "cpu"
    assert main([str(tmp_path / "run"), "--device", "cpu", "--no-deterministic"]) == 0
    printed = capsys.readouterr().out
    assert "| head1 |" in printed and "teacher_side.bf16=auto runs" in printed
    assert "| live step | 8 |" in printed and "| cache build | 24 |" in printed


def rows(*differences: float) -> list[dict]:
    return [
        {"classifier": f"c{i}", "fp32": 70.0, "bf16": 70.0 + d, "changed": 0.5}
        for i, d in enumerate(differences)
    ]


def speed(kind: str, live_bf16: float, build_bf16: float) -> TeacherSideSpeed:
    """float32 at 100 images/s in both uses, bf16 as given."""
    uses = (UseRates(LIVE, 64, 100.0, live_bf16), UseRates(BUILD, 512, 100.0, build_bf16))
    return TeacherSideSpeed(torch.device(kind), True, kind == "cuda", uses)


@pytest.mark.parametrize(
    ("differences", "bf16_rate", "best"),
    [
        ((0.05, -0.1, 0.0), 300.0, True),  # within 0.1 points everywhere and faster: bf16
        ((0.05, 0.2), 300.0, False),  # one classifier moved too far: float32
        ((0.0,), 50.0, False),  # exact but slower (emulated): float32
    ],
)
@pytest.mark.parametrize("kind", ["cuda", "cpu"])
def test_verdict_agrees_with_auto_or_names_the_setting_to_pass(differences, bf16_rate, best, kind):
    text = verdict(Check(rows(*differences), speed(kind, bf16_rate, bf16_rate)))
    assert f"{bf16_rate / 100:.2f}x" in text
    if best == bf16_checked(kind):
        assert "the rule holds here" in text and "pass" not in text
    else:
        assert f"pass teacher_side.bf16={str(best).lower()}" in text


def test_a_directory_without_a_run_is_refused(tmp_path, capsys):
    assert main([str(tmp_path)]) == 2
    assert "summary.json" in capsys.readouterr().err


@pytest.mark.parametrize("kind", ["cuda", "cpu"])
def test_a_verdict_that_differs_between_the_live_step_and_the_cache_build_names_both(kind):
    """The H200 of issue 20: bf16 slower at a live step's batch of 64, faster in a build's batch of 512."""
    text = verdict(Check(rows(0.0), speed(kind, 73.0, 150.0)))
    assert "0.73x float32's speed in a live step at batch 64" in text
    assert "1.50x float32's speed in a cache build at batch 512" in text
    wrong = "live step" if bf16_checked(kind) else "cache build"
    assert f"wrong for the {wrong}" in text
    assert f"pass teacher_side.bf16={str(not bf16_checked(kind)).lower()}" in text


def test_the_batches_are_the_runs_training_and_evaluation_batches():
    assert run_batches({"trainer": {"batch_size": 64, "eval_batch_size": 512}}) == {LIVE: 64, BUILD: 512}
    method = {"batch_size": 128}  # a method's own batch is what its student trains at
    assert run_batches({"trainer": {"batch_size": 64, "eval_batch_size": 256}, "method": method}) == {
        LIVE: 128,
        BUILD: 256,
    }
