"""Bad settings are refused at compose time with one sentence naming the key, the value and what is allowed;
the project's own configs all pass."""

import inspect

import pytest
from conftest import TINY, run_cli

from dih.config.check import DATASETS, LOGGERS, LOSSES, validate
from dih.config.compose import compose_run
from dih.errors import UserError

# (overrides, words the one sentence must contain): every case of the issue and more
BAD = [
    ("trainer.optimizer=adam", ["trainer.optimizer", "'adam'", "only sgd is implemented"]),
    ("trainer.lr=abc", ["trainer.lr", "'abc'", "a number > 0"]),
    ("trainer.lr=-0.1", ["trainer.lr", "-0.1", "a number > 0"]),
    ("trainer.lr=true", ["trainer.lr", "true", "a number"]),
    ("seed=abc", ["seed", "'abc'", "an integer in [0, 2**64 - 1]"]),
    ("seed=1.5", ["seed", "1.5", "an integer"]),
    ("teacher_seed=-1", ["teacher_seed", "-1", "an integer in [0, 2**64 - 1]"]),
    # beyond what torch's generators take (an OverflowError inside torch before)
    ("seed=18446744073709551616", ["seed", "18446744073709551616", "[0, 2**64 - 1]"]),
    ("teacher_seed=99999999999999999999999", ["teacher_seed", "99999999999999999999999", "2**64 - 1"]),
    ("dataset.split_seed=18446744073709551616", ["dataset.split_seed", "2**64 - 1"]),
    # an interpolation naming no setting (an InterpolationKeyError traceback before)
    ("seed=${nope}", ["seed is ${nope}", "cannot be resolved", "'nope' not found"]),
    ("trainer.lr=${trainer.nope}", ["trainer.lr is ${trainer.nope}", "'trainer.nope' not found"]),
    ("trainer.epochs=-3", ["trainer.epochs", "-3", "an integer >= 1"]),
    ("trainer.hint_epochs=0", ["trainer.hint_epochs", "0", ">= 1"]),
    ("trainer.batch_size=0", ["trainer.batch_size", "0", "an integer >= 1"]),
    ("trainer.eval_batch_size=1.5", ["trainer.eval_batch_size", "1.5", "an integer >= 1"]),
    ("method=crd method.batch_size=0", ["method.batch_size", "0", ">= 1"]),
    ("trainer.momentum=1", ["trainer.momentum", "1", "[0, 1)"]),
    # Nesterov (on by default) without momentum: torch's SGD raised a ValueError before
    ("trainer.momentum=0", ["trainer.nesterov is true", "trainer.momentum is 0", "trainer.nesterov=false"]),
    ("trainer.weight_decay=-1e-4", ["trainer.weight_decay", "-0.0001", ">= 0"]),
    ("trainer.gamma=0", ["trainer.gamma", "0", "> 0"]),
    ("trainer.milestones=[0]", ["trainer.milestones", "[0]", "within 1..2"]),
    ("trainer.milestones=[500]", ["trainer.milestones", "[500]", "within 1..2 (trainer.epochs)"]),
    ("trainer.milestones=[2,1]", ["trainer.milestones", "[2, 1]", "strictly increasing"]),
    ("trainer.milestones=1", ["trainer.milestones", "1", "strictly increasing integers"]),
    ("trainer.progress=maybe", ["trainer.progress", "'maybe'", "true or false"]),
    ("trainer.deterministic=sometimes", ["trainer.deterministic", "'sometimes'", "true or false"]),
    ("trainer.deterministic=null", ["trainer.deterministic", "true or false"]),
    ("trainer.foo=1", ["Unknown key trainer.foo", "trainer has:", "lr", "milestones"]),
    ("+trainer.foo=1", ["Unknown key trainer.foo", "trainer has:", "lr", "milestones"]),
    ("+foo=1", ["Unknown key foo", "the top level has:", "trainer", "seed"]),
    ("trainer.lr.x=1", ["trainer.lr.x", "trainer.lr is a single value"]),
    ("method.loss.temperature=0", ["method.loss.temperature", "0", "a number > 0"]),
    ("method.loss.alpha=1.5", ["method.loss.alpha", "1.5", "[0, 1]"]),
    ("method=kd method.loss.alpha=-0.1", ["method.loss.alpha", "-0.1", "[0, 1]"]),
    ("method=dih method.loss.alpha=[0.1,1.2]", ["method.loss.alpha", "[0.1, 1.2]", "[0, 1]"]),
    ("method=dih method.loss.alpha=[0,0,0,0]", ["method.loss.alpha", "not all 0", "method=ce"]),
    ("method=dih method.loss.alpha=0", ["method.loss.alpha", "not all 0", "method=ce"]),
    ("method=dih method.loss.reduction=median", ["method.loss.reduction", "'median'", "sum, mean"]),
    ("method=kd +method.loss.beta=1", ["Unknown key method.loss.beta", "the kd loss has:", "temperature"]),
    ("method=at method.loss.beta=-1", ["method.loss.beta", "-1", ">= 0"]),
    ("method=crd method.loss.alpha_kd=2", ["method.loss.alpha_kd", "2", "[0, 1]"]),
    ("method=crd method.loss.nce_k=0", ["method.loss.nce_k", "0", ">= 1"]),
    ("method=crd method.loss.nce_t=0", ["method.loss.nce_t", "0", "> 0"]),
    ("method=crd method.loss.nce_momentum=1.5", ["method.loss.nce_momentum", "1.5", "[0, 1]"]),
    ("method=crd method.loss.feat_dim=0", ["method.loss.feat_dim", "0", ">= 1"]),
    ("method=tofd method.loss.temperature_rise=-3", ["method.loss.temperature_rise", "-3", ">= 0"]),
    ("method.loss.name=nope", ["Unknown loss 'nope' for method.loss.name", "kd", "dih"]),
    ("method.stages=[teacher,bogus]", ["method.stages", "'bogus'", "assistant"]),
    ("method.heads=conv", ["Unknown kind of heads 'conv' for method.heads", "linear"]),
    ("method=takd method.assistant=res9", ["Unknown model 'res9' for method.assistant", "res20"]),
    ("student.name=resnet8", ["Unknown model 'resnet8' for student.name", "res8"]),
    ("dataset.val_fraction=1", ["dataset.val_fraction", "1", "[0, 1)"]),
    ("dataset.image_size=[16,16]", ["dataset.image_size", "[16, 16]", "an integer >= 1"]),
    ("dataset.name=mnist", ["Unknown data set 'mnist' for dataset.name", "cifar10"]),
    ("dataset=folder dataset.image_size=0", ["dataset.image_size", "0", "null or", "a list of 2"]),
    (
        "dataset=cifar10 +dataset.train_size=3",
        ["Unknown key dataset.train_size", "the cifar10 data set has:"],
    ),
    ("teacher_side.cache=maybe", ["teacher_side.cache", "'maybe'", "auto, true, false"]),
    ("teacher_side.bf16=1", ["teacher_side.bf16", "1", "auto, true, false"]),
    ("trainer.compile=yes", ["trainer.compile", "'yes'", "true or false"]),
    ("teacher_side.compile=auto", ["teacher_side.compile", "'auto'", "true or false"]),
    ("teacher_side.cache_device_share=1.5", ["teacher_side.cache_device_share", "1.5", "[0, 1]"]),
    ("artifacts.on_corrupt=ignore", ["artifacts.on_corrupt", "'ignore'", "rebuild, refuse"]),
    ("artifacts.root=", ["artifacts.root", "''", "a directory for the artifact store", "empty would fill"]),
    ("stage.until=hints", ["stage.until", "'hints'", "teacher, heads, hint, assistant, cohort, student"]),
    ("device=0", ["device", "0", "a string"]),
    ("logger=wandb logger.tags=[1]", ["logger.tags", "[1]", "a string"]),
    (
        "hydra/launcher=nope",
        ["hydra/launcher", "'nope'", "basic, local, slurm, submitit_local, submitit_slurm"],
    ),
    ("method=dihh", ["Unknown method 'dihh'; choose one of: ", " dih,", " fitnets"]),
    ("hydra/launcher=slurm hydra.launcher.partitionn=gpu", ["hydra.launcher.partitionn", "partition"]),
    ("hydra/launcher=submitit_local hydra.launcher.timeout_min=abc", ["hydra.launcher.timeout_min", "'abc'"]),
    # submitit's own errors before, one of them only in a job's log
    ("hydra/launcher=slurm hydra.launcher.timeout_min=-1", ["hydra.launcher.timeout_min", "-1", ">= 1"]),
    ("hydra/launcher=local hydra.launcher.cpus_per_task=0", ["hydra.launcher.cpus_per_task", "0", ">= 1"]),
    ("hydra/launcher=slurm hydra.launcher.array_parallelism=0", ["hydra.launcher.array_parallelism", ">= 1"]),
    (
        "hydra/launcher=slurm +hydra.launcher.foo=1",
        ["Unknown key hydra.launcher.foo", "the submitit launcher has:", "partition", "timeout_min"],
    ),
    ("hydra/launcher=local +hydra.launcher.partition=gpu", ["Unknown key hydra.launcher.partition"]),
    ("trainer.lr=[1", ["trainer.lr=[1", "parse"]),
    ("~method.loss.alpha", ["method.loss.alpha is missing", "[0, 1]"]),
    ("~trainer.nope", ["Unknown key trainer.nope", "trainer has:"]),
    ("seed=1,2", ["seed=1,2", "--multirun"]),
]


def compose_error(overrides: list[str]) -> str:
    with pytest.raises(UserError) as info:
        compose_run(["experiment=smoke", *overrides])  # two epochs: milestones within 1..2
    return str(info.value)


@pytest.mark.parametrize(("override", "words"), BAD, ids=[o for o, _ in BAD])
def test_bad_setting_gets_one_sentence(override, words):
    message = compose_error(override.split())
    assert "\n" not in message and message.endswith("."), message
    for word in words:
        assert word in message, (word, message)


def test_the_error_is_about_the_bad_setting_only():
    compose_run([*TINY, "trainer.lr=0.05", "trainer.epochs=3", "trainer.milestones=[3]", "method=dih"])
    compose_run([*TINY, "method=dih", "method.loss.alpha=[0.1,0.2,0.3,0.4]", "method.loss.reduction=mean"])
    compose_run([*TINY, "trainer.lr=1", "seed=0", "dataset.val_fraction=0", "trainer.milestones=[]"])
    compose_run([*TINY, "teacher_side.cache=true", "teacher_side.bf16=false", "trainer.progress=true"])
    compose_run(["experiment=smoke", "dataset=folder", "dataset.root=/data/x", "dataset.image_size=[24,32]"])
    compose_run([*TINY, "trainer.momentum=0", "trainer.nesterov=false", f"seed={2**64 - 1}"])
    compose_run([*TINY, "seed=${teacher_seed}", "hydra/launcher=slurm", "hydra.launcher.timeout_min=1"])


# Through run.py itself: exit status 2, one `error:` line, no traceback, nothing run.
CLI = [
    (["trainer.optimizer=adam"], ["trainer.optimizer", "adam", "sgd"]),
    (["seed=abc"], ["seed", "abc"]),
    (["+trainer.foo=1"], ["trainer.foo"]),
    (["trainer.milestones=[500]"], ["trainer.milestones", "500"]),
    (["hydra/launcher=nope"], ["hydra/launcher", "nope", "submitit_slurm"]),
    (["seed=1,abc", "--multirun"], ["seed", "abc"]),  # flags after the overrides (argparse)
    (["trainer.momentum=0"], ["trainer.nesterov", "trainer.momentum is 0"]),  # torch's ValueError before
]


@pytest.mark.parametrize(("overrides", "words"), CLI, ids=[" ".join(o) for o, _ in CLI])
def test_run_py_refuses_before_anything_runs(tmp_path, overrides, words):
    proc = run_cli(tmp_path, f"hydra.sweep.dir={tmp_path / 'sweep'}", *overrides, check=False)
    assert proc.returncode == 2, proc.stdout[-2000:]
    assert "Traceback" not in proc.stdout
    errors = [line for line in proc.stdout.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, proc.stdout[-2000:]
    for word in words:
        assert word in errors[0], (word, errors[0])
    assert not list(tmp_path.rglob("summary.json")) and not (tmp_path / "sweep").exists()
    assert not (tmp_path / "artifacts").exists()


def test_every_schema_name_is_one_the_code_knows():
    from dih.data import DATASETS as DATA_NAMES
    from dih.losses import LOSSES as LOSS_CLASSES

    assert set(DATASETS.sections) == set(DATA_NAMES)
    assert set(LOSSES.sections) == set(LOSS_CLASSES)
    for name, cls in LOSS_CLASSES.items():  # the schema's settings are exactly the loss's parameters
        params = inspect.signature(cls).parameters
        params = {p for p, v in params.items() if p != "context" and v.kind is v.POSITIONAL_OR_KEYWORD}
        assert set(LOSSES.sections[name]) - {"name"} == params, name
    assert set(LOGGERS.sections) == {"none", "wandb"}


def test_validate_takes_the_config_a_job_gets():
    cfg = compose_run(list(TINY))
    validate(cfg)
    cfg.trainer.lr = "abc"
    with pytest.raises(UserError, match="trainer.lr is 'abc'"):
        validate(cfg)
