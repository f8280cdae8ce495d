"""End to end through run.py on synthetic data: the chain, reuse, exact resume, corrupt artifacts,
bad input."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import HANG_S, ROOT, TINY, run_cli, summary

pytestmark = pytest.mark.slow


def payload(artifact_dir: Path) -> dict:
    return torch.load(artifact_dir / "payload.pt", weights_only=True)


def test_dih_chain_builds_then_reuses(tmp_path):
    first = run_cli(tmp_path, "method=dih", name="first")
    s = summary(tmp_path, "first")
    assert list(s["stages"]) == ["teacher", "heads", "student"]
    assert not any(stage["reused"] for stage in s["stages"].values())
    heads = s["stages"]["heads"]
    assert {"head1/acc", "head2/acc", "head3/acc"} <= set(heads)
    assert s["stages"]["student"]["epochs"] == 2 and 0 <= s["test/acc_last"] <= 100
    assert "test/acc_best_val" in s
    for stage in s["stages"].values():
        meta = json.loads((tmp_path / "artifacts" / stage["key"] / "meta.json").read_text())
        assert meta["key"] == stage["key"] and len(meta["sha256"]) == 64
    lines = [json.loads(x) for x in (tmp_path / "first" / "metrics.jsonl").read_text().splitlines()]
    assert [(x["stage"], x["epoch"]) for x in lines] == [
        (st, e) for st in ("teacher", "heads", "student") for e in (1, 2)
    ]
    assert {"train/loss", "train/acc", "val/acc", "test/acc", "lr", "time/images_per_s"} <= set(lines[-1])
    assert "built artifact" in first.stdout

    second = run_cli(tmp_path, "method=dih", name="second")
    s2 = summary(tmp_path, "second")
    assert all(stage["reused"] for stage in s2["stages"].values())
    assert not (tmp_path / "second" / "metrics.jsonl").exists()  # nothing trained
    for name, stage in s2["stages"].items():
        assert f"{name}: reused artifact {stage['key']}" in second.stdout
    assert s2["test/acc_last"] == s["test/acc_last"]

    # KD shares the teacher, not the heads; its student is a new artifact.
    run_cli(tmp_path, "method=kd", name="kd")
    kd = summary(tmp_path, "kd")
    assert list(kd["stages"]) == ["teacher", "student"]
    assert (
        kd["stages"]["teacher"]["reused"] and kd["stages"]["teacher"]["key"] == s["stages"]["teacher"]["key"]
    )
    assert not kd["stages"]["student"]["reused"]


def test_ce_student_needs_no_teacher_and_stage_cuts_the_chain(tmp_path):
    run_cli(tmp_path, "method=ce", name="ce")
    assert list(summary(tmp_path, "ce")["stages"]) == ["student"]
    run_cli(tmp_path, "method=dih", "stage=heads", name="heads")
    assert list(summary(tmp_path, "heads")["stages"]) == ["teacher", "heads"]
    bad = run_cli(tmp_path, "method=kd", "stage=heads", name="bad", check=False)
    assert bad.returncode == 2 and "has no heads stage" in bad.stdout


def test_killed_stage_resumes_to_identical_weights(tmp_path):
    overrides = ["stage=teacher", "trainer.epochs=4", "trainer.milestones=[2]"]
    run_cli(tmp_path / "straight", *overrides)
    (reference,) = (tmp_path / "straight" / "artifacts").glob("teacher-*")

    killed = tmp_path / "killed"
    killed.mkdir()
    args = [
        sys.executable,
        str(ROOT / "run.py"),
        *TINY,
        *overrides,
        f"artifacts.root={killed / 'artifacts'}",
        f"hydra.run.dir={killed / 'run'}",
    ]
    proc = subprocess.Popen(args, cwd=killed, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    checkpoint = killed / "artifacts" / reference.name / "work" / "checkpoint.pt"
    deadline = time.time() + HANG_S
    while not checkpoint.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)  # mid-way through epoch 2
    proc.wait()
    assert not (killed / "artifacts" / reference.name / "meta.json").exists(), (
        "killed too late to test resume"
    )

    resumed = run_cli(killed, *overrides, name="run2")
    assert "resuming after epoch" in resumed.stdout
    got, want = payload(killed / "artifacts" / reference.name), payload(reference)
    assert got["model"].keys() == want["model"].keys()
    for name, tensor in want["model"].items():
        assert torch.equal(got["model"][name], tensor), name
    history = [
        json.loads(x)
        for x in (killed / "artifacts" / reference.name / "metrics.jsonl").read_text().splitlines()
    ]
    assert [h["epoch"] for h in history] == [1, 2, 3, 4]


def test_corrupt_artifact_is_never_loaded(tmp_path):
    run_cli(tmp_path, "stage=teacher", name="first")
    (artifact,) = (tmp_path / "artifacts").glob("teacher-*")
    data = bytearray((artifact / "payload.pt").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (artifact / "payload.pt").write_bytes(bytes(data))

    refused = run_cli(tmp_path, "stage=teacher", "artifacts.on_corrupt=refuse", name="refused", check=False)
    assert refused.returncode == 2 and "corrupt" in refused.stdout and "checksum" in refused.stdout

    rebuilt = run_cli(tmp_path, "stage=teacher", name="rebuilt")
    assert "corrupt" in rebuilt.stdout
    assert not summary(tmp_path, "rebuilt")["stages"]["teacher"]["reused"]
    assert list((tmp_path / "artifacts").glob("teacher-*.corrupt-*")), "the corrupt copy is set aside"


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("teacher=res9", "Unknown teacher 'res9'; choose one of: res110, res14, res18, res20, res34, res8"),
        ("method=dihh", "Unknown method 'dihh'; choose one of:"),
        ("student.name=resnet8", "Unknown model 'resnet8' for student.name; choose one of:"),
        ("dataset=cifar100", "dataset.root="),
    ],
)
def test_bad_input_gets_one_sentence(tmp_path, override, expected):
    real_data = override.startswith("dataset=")
    extra = [f"dataset.root={tmp_path / 'nowhere'}"] if real_data else []
    proc = run_cli(tmp_path, override, *extra, check=False, tiny=not real_data)
    assert proc.returncode == 2
    assert expected in proc.stdout
    assert "Traceback" not in proc.stdout
    error_lines = [line for line in proc.stdout.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1


def test_help_and_cfg_show_groups_and_config(tmp_path):
    help_text = subprocess.run(
        [sys.executable, str(ROOT / "run.py"), "--help"], capture_output=True, text=True, cwd=tmp_path
    ).stdout
    for group in ("dataset", "teacher", "student", "method", "stage", "experiment"):
        assert f"{group}:" in help_text
    cfg = subprocess.run(
        [sys.executable, str(ROOT / "run.py"), "method=kd", "seed=67", "--cfg", "job"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    ).stdout
    assert "name: kd" in cfg and "seed: 67" in cfg and "lr: 0.1" in cfg
