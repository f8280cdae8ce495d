"""The bf16 check evaluates the run's real cohort (its bf16 figures are the heads stage's own), times the
teacher side in both precisions, and says whether ``auto``'s rule holds on the device."""

import pytest
import torch
from conftest import run_cli, summary

from dih.teacher_side.precision import bf16_checked
from dih.tools.precision_check import Check, check, main, verdict


@pytest.mark.slow
def test_bf16_column_reproduces_the_heads_stage(tmp_path, monkeypatch, capsys):
    run_cli(tmp_path, "method=dih", "stage=heads", "teacher_side.bf16=true", "dataset.val_fraction=0")
    monkeypatch.chdir(tmp_path)
    c = check(tmp_path / "run", device="cpu", seconds=0.05)
    heads = summary(tmp_path)["stages"]["heads"]
    assert [r["classifier"] for r in c.rows] == ["head1", "head2", "head3", "teacher"]
    for i, row in enumerate(c.rows[:-1], 1):
        assert row["bf16"] == pytest.approx(heads[f"head{i}/acc"], abs=1e-4)  # float32 mean vs exact count
        assert 0 <= row["changed"] <= 100 and 0 <= row["fp32"] <= 100
    assert c.fp32_rate > 0 and c.bf16_rate > 0 and c.device.type == "cpu"
    assert main([str(tmp_path / "run"), "--device", "cpu", "--no-deterministic"]) == 0
    printed = capsys.readouterr().out
    assert "| head1 |" in printed and "teacher_side.bf16=auto runs" in printed


def rows(*differences: float) -> list[dict]:
    return [
        {"classifier": f"c{i}", "fp32": 70.0, "bf16": 70.0 + d, "changed": 0.5}
        for i, d in enumerate(differences)
    ]


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
    text = verdict(Check(rows(*differences), 100.0, bf16_rate, torch.device(kind)))
    assert f"{bf16_rate / 100:.2f}x" in text
    if best == bf16_checked(kind):
        assert "the rule holds here" in text and "pass" not in text
    else:
        assert f"pass teacher_side.bf16={str(best).lower()}" in text


def test_a_directory_without_a_run_is_refused(tmp_path, capsys):
    assert main([str(tmp_path)]) == 2
    assert "summary.json" in capsys.readouterr().err
