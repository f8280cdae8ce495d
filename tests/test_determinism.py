"""Deterministic kernels on CUDA (what is set, chosen on any machine), and the checkpoint's record of where
it was written: resuming on another setup warns, and still resumes."""

import logging
import os

import pytest
import torch

from dih.data import load_data
from dih.losses.ce import CELoss
from dih.models import build_model
from dih.store import atomic
from dih.train.determinism import (
    CUBLAS_WORKSPACE_CONFIG,
    apply_determinism,
    determinism_settings,
    environment,
)
from dih.train.engine import CHECKPOINT, Recipe, Task, fit


def test_cuda_deterministic_sets_every_switch():
    assert determinism_settings("cuda", True) == {
        "env.CUBLAS_WORKSPACE_CONFIG": CUBLAS_WORKSPACE_CONFIG,
        "torch.backends.cudnn.deterministic": True,
        "torch.backends.cudnn.benchmark": False,
        "torch.use_deterministic_algorithms": True,
        "torch.backends.cuda.matmul.allow_tf32": False,
        "torch.backends.cudnn.allow_tf32": False,
    }
    assert list(determinism_settings("cuda", True))[0] == "env.CUBLAS_WORKSPACE_CONFIG", "set before cuBLAS"


def test_cuda_not_deterministic_autotunes_and_allows_tf32():
    settings = determinism_settings("cuda", False)
    assert settings["torch.backends.cudnn.benchmark"] is True
    assert settings["torch.use_deterministic_algorithms"] is False
    assert settings["torch.backends.cuda.matmul.allow_tf32"] is True
    assert settings["torch.backends.cudnn.allow_tf32"] is True
    # the workspace is fixed at a process's first cuBLAS call: a later deterministic run needs it set
    assert settings["env.CUBLAS_WORKSPACE_CONFIG"] == CUBLAS_WORKSPACE_CONFIG


@pytest.mark.parametrize("deterministic", [True, False])
def test_cpu_sets_nothing(deterministic, monkeypatch):
    assert determinism_settings("cpu", deterministic) == {}
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    flags = _flags()
    try:
        assert apply_determinism("cpu", deterministic) == {}
        assert _flags() == flags
        assert "CUBLAS_WORKSPACE_CONFIG" not in os.environ
    finally:
        _restore(flags)


def test_apply_sets_what_it_chose(monkeypatch):
    """Applying the CUDA choice (the flags are settable without a GPU) sets each flag; state restored."""
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":16:8")  # a value already there is kept
    flags = _flags()
    try:
        apply_determinism("cuda", True)
        assert _flags() == (True, False, True, False, False)
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":16:8"
        apply_determinism("cuda", False)
        assert _flags() == (False, True, False, True, True)
    finally:
        _restore(flags)


def _flags():
    return (
        torch.backends.cudnn.deterministic,
        torch.backends.cudnn.benchmark,
        torch.are_deterministic_algorithms_enabled(),
        torch.backends.cuda.matmul.allow_tf32,
        torch.backends.cudnn.allow_tf32,
    )


def _restore(flags) -> None:
    (
        torch.backends.cudnn.deterministic,
        torch.backends.cudnn.benchmark,
        algorithms,
        torch.backends.cuda.matmul.allow_tf32,
        torch.backends.cudnn.allow_tf32,
    ) = flags
    torch.use_deterministic_algorithms(algorithms)


def test_environment_on_cpu():
    record = environment("cpu")
    assert record["device_type"] == "cpu" and record["device"]
    assert record["torch"] == torch.__version__
    assert record["cuda"] is None and record["cudnn"] is None and record["deterministic"] is None
    assert record["threads"] == torch.get_num_threads()


# ---- resuming from a checkpoint written elsewhere ----------------------------------------------------------

DATA = {"name": "synthetic", "num_classes": 4, "image_size": 8, "train_size": 48, "test_size": 16}


def train(work_dir, epochs: int) -> dict:
    torch.manual_seed(0)
    data = load_data({**DATA, "val_fraction": 0.25})
    task = Task(build_model("res8", data.num_classes), CELoss())
    recipe = Recipe(epochs=epochs, milestones=(), batch_size=16)
    return fit(task, data, recipe, torch.device("cpu"), work_dir, seed=1, stage="student", progress=False)


def edit_checkpoint(work_dir, edit) -> None:
    state = torch.load(work_dir / CHECKPOINT, map_location="cpu", weights_only=True)
    edit(state)
    atomic.torch_save(work_dir / CHECKPOINT, state)


def resume_warnings(caplog, work_dir) -> list[str]:
    with caplog.at_level(logging.INFO, logger="dih.train.engine"):
        summary = train(work_dir, epochs=2)
    assert summary["epochs"] == 2
    assert any("resuming after epoch 1" in r.getMessage() for r in caplog.records), "it resumed"
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


@pytest.mark.slow  # trains, stops and resumes a stage
def test_resume_on_other_versions_warns_and_completes(tmp_path, caplog):
    train(tmp_path, epochs=1)
    edit_checkpoint(tmp_path, lambda s: s["environment"].update(torch="1.0.0"))
    (warning,) = resume_warnings(caplog, tmp_path)
    assert f"torch: 1.0.0 -> {torch.__version__}" in warning
    assert "not be bit-identical" in warning


@pytest.mark.slow  # trains, stops and resumes a stage
def test_resume_on_same_setup_does_not_warn(tmp_path, caplog):
    train(tmp_path, epochs=1)
    assert resume_warnings(caplog, tmp_path) == []


@pytest.mark.slow  # trains, stops and resumes a stage
def test_old_checkpoint_without_record_resumes_without_warning(tmp_path, caplog):
    train(tmp_path, epochs=1)
    edit_checkpoint(tmp_path, lambda s: s.pop("environment"))
    assert resume_warnings(caplog, tmp_path) == []
