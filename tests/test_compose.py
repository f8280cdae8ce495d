"""dih.config.compose: every option of the project's config groups composes and validates, compose_run gives
what Hydra's own compose gives, expand_sweep runs a multirun's runs in Hydra's order, and Hydra's launcher
names work beside the project's presets."""

import itertools
import time
from fnmatch import fnmatch

import pytest
from conftest import ROOT, TINY, run_cli
from hydra import compose, initialize_config_dir
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

from dih.config.compose import check_multirun, compose_run, expand_sweep, group_options
from dih.config.sweep_file import load
from dih.errors import UserError
from dih.sweep.launch import commands

CONF_DIR = ROOT / "conf"
# what an option needs beside itself to be a run
NEEDS = {("dataset", "folder"): ["dataset.root=/data/images"]}
GROUPS = ["dataset", "teacher", "student", "method", "stage", "trainer", "logger", "experiment"]


def test_group_options_are_hydras_including_plugins():
    for group in GROUPS:
        assert list(group_options(group)) == sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml")), group
    assert list(group_options("hydra/launcher")) == [
        "basic",
        "local",
        "slurm",
        "submitit_local",
        "submitit_slurm",
    ]


@pytest.mark.parametrize("group", GROUPS)
def test_every_option_composes_and_validates(group):
    for option in group_options(group):
        cfg = compose_run([f"{group}={option}", *NEEDS.get((group, option), [])])
        if group in ("dataset", "method", "logger"):
            assert cfg[group].name == option
        compose_run(["experiment=smoke", f"{group}={option}", *NEEDS.get((group, option), [])])


@pytest.mark.parametrize(
    "overrides",
    [
        [],
        ["method=kd", "teacher=res20", "seed=50"],
        [*TINY, "method=takd", "method.assistant=res14"],
        ["experiment=smoke", "dataset=cifar10", "trainer.epochs=3", "++trainer.gamma=0.2"],
        ["method=dih", "method.loss.alpha=[0.1,0.2,0.3,0.4]", "logger=wandb", "logger.tags=[a]"],
        ["hydra/launcher=submitit_local", "hydra.launcher.timeout_min=5", "method=crd", "stage=teacher"],
    ],
)
def test_compose_run_is_hydras_compose(overrides):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3", job_name="run"):
        expected = OmegaConf.to_container(compose("config", overrides=overrides))
    assert OmegaConf.to_container(compose_run(overrides)) == expected


def test_compose_run_can_be_called_again_and_again():
    first = compose_run(["method=kd", "seed=50"])
    first.trainer.lr = 123.0  # the result is the caller's: later compositions do not see this
    second = compose_run(["method=kd", "seed=67"])
    assert second.trainer.lr == 0.1 and second.seed == 67 and first.seed == 50
    with pytest.raises(UserError):
        compose_run(["method=kd", "seed=abc"])
    assert compose_run(["method=kd"]).seed == 30


def test_expand_sweep_follows_hydras_basic_sweeper():
    assert expand_sweep(["a=1,2", "b=x,y"]) == [
        ["a=1", "b=x"],
        ["a=1", "b=y"],
        ["a=2", "b=x"],
        ["a=2", "b=y"],
    ]
    assert expand_sweep(["seed=range(1,4)"]) == [["seed=1"], ["seed=2"], ["seed=3"]]
    assert expand_sweep(["method=kd", "trainer.milestones=[1, 2]"]) == [
        ["method=kd", "trainer.milestones=[1, 2]"]
    ]
    assert expand_sweep([]) == [[]]
    overrides = ["method=glob([k*,d*])", "x=choice(3,1)", "seed=range(30,70,20)", "y=5", "+z=a,b", "x=7,8"]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3", job_name="run"):
        from hydra.core.global_hydra import GlobalHydra

        parser = OverridesParser.create(config_loader=GlobalHydra.instance().config_loader())
        (expected,) = BasicSweeper.split_arguments(parser.parse_overrides(overrides), None)
    assert expand_sweep(overrides) == expected
    # the methods k*, d* (Hydra sorts the glob's matches) x the later x's 7, 8 (in the first x's place) x
    # seeds 30, 50 x z a, b: the glob counts what conf/method holds, so a new method does not move this test
    globbed = sorted(m for m in group_options("method") if fnmatch(m, "k*") or fnmatch(m, "d*"))
    assert len(globbed) >= 2 and len(expected) == 8 * len(globbed)
    assert expected[0] == [f"method={globbed[0]}", "x=7", "seed=30", "y=5", "+z=a"]


def test_a_sweep_needs_multirun_and_intervals_are_refused():
    with pytest.raises(UserError, match="--multirun"):
        compose_run(["seed=1,2"])
    with pytest.raises(UserError, match="interval"):
        expand_sweep(["trainer.lr=interval(0.1,0.2)"])
    with pytest.raises(UserError, match="Hydra's own settings"):
        expand_sweep(["hydra.launcher.cpus_per_task=1,2"])


def test_one_bad_run_stops_the_multirun_and_names_it():
    with pytest.raises(UserError, match=r"seed is 'abc'.*\(in the run .*seed=abc\)"):
        check_multirun([*TINY, "method=kd,ce", "seed=1,abc"])
    assert len(check_multirun([*TINY, "method=kd,ce", "seed=1,2"])) == 4


@pytest.mark.slow  # 372 runs composed: about 13 s of CPU (the small sweeps' test below is the fast tier's)
def test_the_paper_grids_are_checked_in_a_few_seconds(tmp_path):
    # this process's CPU time, not the wall clock: a shared machine's load does not fail the test
    runs, start = 0, time.process_time()
    for name in ("cifar100", "cifar10"):
        for cmd in commands(load(ROOT / "multirun_sweeps" / f"{name}.yaml"), tmp_path, []):
            runs += len(check_multirun(cmd[3:]))
    assert runs == 2 * 186
    assert time.process_time() - start < 60  # ~13 s of CPU here; Hydra's own compose: about 5 times that


@pytest.mark.parametrize("name", ["laptop", "cifar10_cpu", "cifar10_cpu_long", "cifar10_cpu_long_mean"])
def test_the_small_sweeps_runs_pass_the_settings_check(name, tmp_path):
    """Each grid's runs compose and validate as the sweep will launch them (a list-valued alpha included)."""
    sweep = load(ROOT / "multirun_sweeps" / f"{name}.yaml")
    configs = []
    for cmd in commands(sweep, tmp_path, []):
        check_multirun(cmd[3:], then=configs.append)
    assert len(configs) == sum(len(list(itertools.product(*g.values()))) for g in sweep["grids"])
    alphas = [OmegaConf.to_object(c.method.loss).get("alpha") for c in configs if c.method.name == "dih"]
    if name == "cifar10_cpu_long":  # the ablation grid reaches the loss as a list of numbers, not a string
        assert alphas.count([0, 0, 0.1, 0.1]) == 3 and alphas.count(0.1) == 3
    if name == "cifar10_cpu_long_mean":  # both cohorts averaged, the full one also summed
        losses = [(OmegaConf.to_object(c.method.loss)["alpha"], c.method.loss.reduction) for c in configs]
        assert sorted(map(str, losses)) == sorted(
            map(str, [(0.1, "mean")] * 3 + [([0, 0, 0.1, 0.1], "mean")] * 3 + [(0.1, "sum")] * 3)
        )


@pytest.mark.slow
@pytest.mark.parametrize("launcher", ["submitit_local", "basic"])
def test_hydras_launcher_names_run_a_multirun(tmp_path, launcher):
    sweep = tmp_path / "sweep"
    run_cli(
        tmp_path,
        f"hydra/launcher={launcher}",
        f"hydra.sweep.dir={sweep}",
        "method=ce",
        "seed=1,2",
        "--multirun",
    )
    assert sorted(p.parent.name for p in sweep.glob("*/summary.json")) == [
        "0_ce_res14_res8_s1",
        "1_ce_res14_res8_s2",
    ]
    assert (sweep / ".submitit").exists() == (launcher == "submitit_local")
