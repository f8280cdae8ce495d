"""W&B in offline mode records each run's config, per-epoch metrics and final accuracies, grouped and
tagged; a W&B failure never stops training."""

import pytest
from conftest import run_cli, summary

pytestmark = pytest.mark.slow


def test_wandb_offline_records_the_run(tmp_path):
    run_cli(tmp_path, "method=kd", "logger=wandb", "logger.tags=[trial]")
    (record,) = (tmp_path / "run" / "wandb").glob("offline-run-*/run-*.wandb")
    data = record.read_bytes()  # W&B's own transaction log of the run, written with no network
    for expected in (
        b"student/train/loss",
        b"teacher/test/acc",
        b"test/acc_last",
        b"kd res14->res8 s30",
        b"res14->res8",
        b"seed30",
        b"trial",
        b"synthetic",
    ):
        assert expected in data, expected
    assert summary(tmp_path)["test/acc_last"] >= 0


def test_a_wandb_failure_does_not_stop_training(tmp_path):
    proc = run_cli(tmp_path, "method=kd", "logger=wandb", "logger.mode=not-a-mode")
    assert "W&B could not start" in proc.stdout
    s = summary(tmp_path)
    assert s["stages"]["student"]["epochs"] == 2 and (tmp_path / "run" / "metrics.jsonl").exists()
