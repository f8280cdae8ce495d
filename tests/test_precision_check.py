"""The bf16 check evaluates the run's real cohort: its bf16 figures are the heads stage's own."""

import pytest
from conftest import run_cli, summary

from dih.precision_check import compare

pytestmark = pytest.mark.slow


def test_bf16_column_reproduces_the_heads_stage(tmp_path, monkeypatch):
    run_cli(tmp_path, "method=dih", "stage=heads", "teacher_side.bf16=true", "dataset.val_fraction=0")
    monkeypatch.chdir(tmp_path)
    rows = compare(tmp_path / "run")
    heads = summary(tmp_path)["stages"]["heads"]
    assert [r["classifier"] for r in rows] == ["head1", "head2", "head3", "teacher"]
    for i, row in enumerate(rows[:-1], 1):
        assert row["bf16"] == pytest.approx(heads[f"head{i}/acc"], abs=1e-4)  # float32 mean vs exact count
        assert 0 <= row["changed"] <= 100 and 0 <= row["fp32"] <= 100
