"""``trainer.compile``: the student stage built with its whole step compiled (CPU here: torch's default
mode) trains what the eager stage trains, up to rounding, compiles its graphs in the first epoch only (the
last, partial batch runs eagerly and the learning rate is a tensor, so no epoch recompiles), writes a plain
state dict and resumes exactly.

The stages run through the real chain: a composed config, ``plan.runtime`` and the student stage's
builder. Compilation takes tens of seconds on two cores, so the compiled stage is built once for the module
(later builds of the same model class reuse its graph)."""

import json
import logging

import pytest
import torch
from torch._dynamo.utils import counters

from dih import stages
from dih.config import compose
from dih.losses import CELoss
from dih.models import build_model
from dih.plan.chain import plan_run, runtime
from dih.train.compiled_step import compile_mode
from dih.train.engine import CHECKPOINT, Task

EPOCHS = 3
# 36 training images after the 10% validation hold-out, in batches of 16: the last batch holds 4.
SETTINGS = [
    "experiment=smoke",
    "method=ce",
    "student=res8",
    "device=cpu",
    "dataset.num_classes=4",
    "dataset.image_size=8",
    "dataset.train_size=40",
    "dataset.test_size=16",
    "trainer.batch_size=16",
    "trainer.eval_batch_size=4",  # the 4 validation and 16 test images in full batches: evaluation compiles
    "trainer.milestones=[2]",
    "trainer.progress=false",
]


def graphs() -> int:
    """Graphs torch.compile has captured in this process (a recompilation captures another)."""
    return counters["stats"]["unique_graphs"]


def build(work_dir, *overrides: str, epochs: int = EPOCHS) -> dict:
    """Build the student stage in ``work_dir``; its payload, epoch lines and graphs captured by each."""
    cfg = compose.compose_run([*SETTINGS, f"trainer.epochs={epochs}", *overrides])
    (planned,) = plan_run(cfg)
    captured = []
    rt = runtime(cfg, on_epoch=lambda line: captured.append(graphs()))
    before = graphs()
    payload, _ = stages.build(planned.spec, {}, rt, work_dir)
    lines = [json.loads(line) for line in (work_dir / "metrics.jsonl").read_text().splitlines()]
    return {
        "rt": rt,
        "checkpoint": torch.load(work_dir / CHECKPOINT, weights_only=True),
        "payload": payload,
        "lines": lines,
        "graphs": [n - before for n in captured],
    }


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    torch._dynamo.reset()  # count from an empty cache, whatever ran before in this process
    return build(tmp_path_factory.mktemp("compiled"), "trainer.compile=true")


@pytest.fixture(scope="module")
def eager(tmp_path_factory):
    return build(tmp_path_factory.mktemp("eager"))


def test_compile_mode_uses_cuda_graphs_on_cuda_only():
    assert compile_mode("cuda") == "reduce-overhead"
    assert compile_mode("cpu") is None


@pytest.mark.slow  # trains a stage compiled (and eager)
def test_the_setting_reaches_the_training_step(compiled, eager):
    assert compiled["rt"].compile_training and not eager["rt"].compile_training
    assert compiled["graphs"][-1] >= 1  # the stage really compiled
    assert eager["graphs"] == [0] * EPOCHS


@pytest.mark.slow  # trains a stage compiled (and eager)
def test_the_first_epoch_compiles_and_no_later_one_does(compiled):
    # The first epoch compiles the full-batch step (its forward and loss, the optimiser step) and evaluation;
    # the partial last batch runs eagerly, and the learning rate's drop after epoch 2 fills a tensor.
    assert compiled["graphs"][0] >= 3
    assert compiled["graphs"] == [compiled["graphs"][0]] * EPOCHS
    assert [line["lr"] for line in compiled["lines"]] == pytest.approx([0.1, 0.1, 0.01], rel=1e-15)


@pytest.mark.slow  # trains a stage compiled (and eager)
def test_compiled_training_equals_eager_up_to_rounding(compiled, eager):
    assert len(compiled["lines"]) == len(eager["lines"]) == EPOCHS
    for ours, theirs in zip(compiled["lines"], eager["lines"], strict=True):
        for metric in ("train/loss", "train/acc", "val/acc", "test/acc"):
            assert ours[metric] == pytest.approx(theirs[metric], rel=1e-4, abs=1e-6), metric
    ours, theirs = compiled["payload"]["model"], eager["payload"]["model"]
    assert ours.keys() == theirs.keys()
    for name, tensor in ours.items():
        torch.testing.assert_close(tensor, theirs[name], rtol=1e-4, atol=1e-5, msg=name)


@pytest.mark.slow  # trains a stage compiled (and eager)
def test_compiled_artifact_and_checkpoint_load_into_a_plain_model(compiled):
    state = compiled["payload"]["model"]
    model = build_model("res8", 4)
    model.load_state_dict(state)  # strict: every key matches the uncompiled model's (no ``_orig_mod.``)
    assert all(torch.equal(t, state[name]) for name, t in model.state_dict().items())
    learner = Task(build_model("res8", 4), CELoss()).learner
    learner.load_state_dict(compiled["checkpoint"]["learner"])
    assert all(torch.equal(t, state[name]) for name, t in learner["model"].state_dict().items())


@pytest.mark.slow  # trains a stage compiled (and eager)
def test_compiled_stage_resumes_to_the_same_weights(compiled, tmp_path):
    build(tmp_path, "trainer.compile=true", epochs=2)  # stopped after epoch 2's checkpoint
    resumed = build(tmp_path, "trainer.compile=true")
    assert [line["epoch"] for line in resumed["lines"]] == list(range(1, EPOCHS + 1))
    assert resumed["lines"][-1]["train/loss"] == compiled["lines"][-1]["train/loss"]
    for name, tensor in compiled["payload"]["model"].items():
        assert torch.equal(resumed["payload"]["model"][name], tensor), name


@pytest.mark.slow  # trains a stage compiled (and eager)
def test_resuming_an_eager_checkpoint_compiled_warns_that_bits_differ(tmp_path, caplog):
    build(tmp_path, epochs=2)
    with caplog.at_level(logging.WARNING, logger="dih.train.engine"):
        resumed = build(tmp_path, "trainer.compile=true")
    assert [line["epoch"] for line in resumed["lines"]] == list(range(1, EPOCHS + 1))
    (warning,) = [
        r.getMessage()
        for r in caplog.records
        if r.name == "dih.train.engine" and r.levelno >= logging.WARNING
    ]
    assert "trainer.compile: None -> step" in warning and "not be bit-identical" in warning
    assert resumed["checkpoint"]["environment"]["trainer.compile"] == "step"
