"""The paper's defaults as the real config composes them (SPEC s.4-6), and the paper grids' run counts.

The expected values are written out here from SPEC, not read back from conf/, so that a changed default
in conf/ fails a test instead of changing what the test expects.
"""

import itertools
from pathlib import Path

import hydra
import pytest
import yaml
from conftest import ROOT
from omegaconf import OmegaConf

from dih.config import sweep_file as sweep

# SPEC s.6: every stage's recipe unless its method says otherwise.
RECIPE = {
    "optimizer": "sgd",
    "lr": 0.1,
    "momentum": 0.9,
    "nesterov": True,
    "weight_decay": 5e-4,
    "epochs": 200,
    "milestones": [60, 120, 180],
    "gamma": 0.1,
    "batch_size": 64,
    "hint_epochs": 40,  # FitNets' hint stage
}

KD = {"name": "kd", "alpha": 0.1, "temperature": 5}

# SPEC s.4-5: each method's stages, its student's batch size and its loss settings.
METHODS = {
    "ce": {"stages": ["student"], "batch_size": 64, "loss": {"name": "ce"}},
    "kd": {"stages": ["teacher", "student"], "batch_size": 64, "loss": KD},
    "fitnets": {
        "stages": ["teacher", "hint", "student"],
        "batch_size": 64,
        "loss": KD,
        "hint": {"hint": "stage1", "guided": "stage1"},
    },
    "takd": {
        "stages": ["teacher", "assistant", "student"],
        "batch_size": 64,
        "loss": KD,
        "assistant": "res20",
    },
    "at": {"stages": ["teacher", "student"], "batch_size": 64, "loss": {"name": "at", "beta": 1000, "p": 2}},
    "crd": {
        "stages": ["teacher", "student"],
        "batch_size": 128,
        "loss": {
            "name": "crd",
            "alpha_kd": 0.9,
            "temperature": 4,
            "beta": 0.8,
            "nce_k": 16384,
            "nce_t": 0.07,
            "nce_momentum": 0.5,
            "feat_dim": 128,
        },
    },
    "tofd": {
        "stages": ["teacher", "heads", "student"],
        "batch_size": 128,
        "loss": {"name": "tofd", "alpha": 0.05, "beta": 0.03, "temperature_rise": 3},
    },
    "mhkd": {
        "stages": ["teacher", "heads", "student"],
        "batch_size": 64,
        "loss": {"name": "mhkd", "alpha": 0.1, "temperature": 4, "beta": 0.5},
    },
    "dih": {
        "stages": ["teacher", "heads", "student"],
        "batch_size": 64,
        "loss": {"name": "dih", "alpha": 0.1, "temperature": 5, "reduction": "sum"},
    },
}

RUN = {
    "seed": 30,
    "teacher_seed": 30,
    "dataset.name": "cifar100",
    "dataset.val_fraction": 0.1,
    "teacher.name": "res110",
    "student.name": "res8",
    "trainer.deterministic": True,  # exact resume on CUDA (docs/choices.md)
}


@pytest.fixture(scope="module")
def composed() -> dict:
    """The config of every method as ``run.py method=<m>`` composes it."""
    with hydra.initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return {
            m: OmegaConf.to_container(hydra.compose("config", overrides=[f"method={m}"]), resolve=False)
            for m in METHODS
        }


def test_nine_methods_are_composed(composed):
    assert set(composed) == {"ce", "kd", "fitnets", "takd", "at", "crd", "tofd", "mhkd", "dih"}
    for method, cfg in composed.items():
        assert cfg["method"]["name"] == method


@pytest.mark.parametrize("method", list(METHODS))
def test_recipe_is_the_papers(composed, method):
    trainer = composed[method]["trainer"]
    for name, value in RECIPE.items():
        assert trainer[name] == value, f"{method}: trainer.{name} is {trainer[name]!r}, SPEC says {value!r}"
    assert trainer["nesterov"] is True


@pytest.mark.parametrize("method", list(METHODS))
def test_run_defaults_are_the_papers(composed, method):
    cfg = OmegaConf.create(composed[method])
    for dotted, value in RUN.items():
        assert OmegaConf.select(cfg, dotted) == value, f"{method}: {dotted}"


@pytest.mark.parametrize("method", list(METHODS))
def test_method_stages_and_loss_are_the_papers(composed, method):
    want = METHODS[method]
    got = composed[method]["method"]
    assert list(got["stages"]) == want["stages"]
    # The student stage's batch: the method's own where it has one, else the trainer's.
    batch = got.get("batch_size") or composed[method]["trainer"]["batch_size"]
    assert batch == want["batch_size"], f"{method}: student batch {batch}"
    for name, value in want["loss"].items():
        assert name in got["loss"], f"{method}: method.loss.{name} missing"
        assert got["loss"][name] == value, (
            f"{method}: method.loss.{name} is {got['loss'][name]!r}, not {value!r}"
        )
    for extra in ("hint", "assistant"):
        if extra in want:
            assert got[extra] == want[extra], f"{method}: method.{extra}"


# --- the paper's grids -------------------------------------------------------------------------------

PAPER_GRIDS = ["cifar100", "cifar10", "tiny_imagenet"]
NINE = {"ce", "kd", "fitnets", "takd", "at", "crd", "tofd", "mhkd", "dih"}


def expand(path: Path) -> list[dict]:
    """Every run of a sweep file: the cartesian product of each grid's value lists, grid after grid."""
    runs = []
    for grid in yaml.safe_load(path.read_text())["grids"]:
        keys = list(grid)
        for values in itertools.product(*(grid[k] for k in keys)):
            runs.append(dict(zip(keys, values)))
    return runs


@pytest.mark.parametrize("name", PAPER_GRIDS)
def test_paper_grid_has_186_distinct_runs(name):
    path = ROOT / "multirun_sweeps" / f"{name}.yaml"
    runs = expand(path)
    assert len(runs) == 186
    assert sweep.size(sweep.load(path)) == 186
    identities = [
        (r["teacher"], r["student"], r["method"], r["seed"], r.get("method.assistant")) for r in runs
    ]
    assert len(set(identities)) == 186, "a run appears twice"
    assert {r["method"] for r in runs} == NINE
    assert {r["seed"] for r in runs} == {30, 50, 67}
    assert {r["student"] for r in runs} == {"res8"}
    assert f"dataset={name}" in yaml.safe_load(path.read_text())["overrides"]
