"""The heads stage's own recipe and its variants (issue 21): method.heads_recipe reaches the heads stage and
its key and nothing else; the original's keys do not move; the learning-rate search chooses on the validation
split only; the calibration fits each head's temperature by validation NLL and folds it into the head."""

import dataclasses
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import run_cli, summary
from PIL import Image

from dih.config import compose
from dih.data import load_data
from dih.errors import UserError
from dih.models.heads import LinearHeads
from dih.plan.chain import plan_run
from dih.report.write import write_report
from dih.stages import heads_choice


def plan(*overrides: str) -> dict:
    """The run's specs by role; the student reads the live teacher side, whose heads it names."""
    cfg = compose.compose_run(["method=dih", "teacher_side.cache=false", *overrides])
    return {p.name: p.spec for p in plan_run(cfg)}


# ---- settings, plan, keys ----------------------------------------------------------------------------------


def test_the_heads_recipe_reaches_the_heads_stage_and_its_key_and_nothing_else():
    base = plan()
    own = plan(
        "method.heads_recipe.lr=0.01", "method.heads_recipe.epochs=50", "method.heads_recipe.milestones=[30]"
    )
    heads = own["heads"].recipe
    assert (heads.lr, heads.epochs, heads.milestones) == (0.01, 50, (30,))
    assert dataclasses.replace(heads, lr=0.1, epochs=200, milestones=(60, 120, 180)) == base["heads"].recipe
    assert own["heads"].key != base["heads"].key
    assert own["teacher"] == base["teacher"]
    # the student reads other heads, and nothing else of it changes
    assert dataclasses.replace(own["student"], heads=base["heads"].key) == base["student"]


def test_the_original_heads_keys_do_not_move():
    """The fields added for the variants are hashed only when set: the original's heads identity holds
    neither, and equals that of a config written before heads_recipe existed."""
    identity = plan()["heads"].identity()
    assert "lr_search" not in identity and "calibrate" not in identity
    assert plan("~method.heads_recipe")["heads"].key == plan()["heads"].key


@pytest.mark.parametrize(
    "method, field, value",
    [("dih_search", "lr_search", (0.1, 0.01, 0.001, 0.0001)), ("dih_calibrated", "calibrate", True)],
)
def test_each_variant_is_its_own_heads_artifact(method, field, value):
    base = plan()
    variant = plan(f"method={method}")
    assert getattr(variant["heads"], field) == value
    assert field in variant["heads"].identity() and variant["heads"].key != base["heads"].key
    assert variant["teacher"] == base["teacher"]


@pytest.mark.parametrize(
    "overrides, words",
    [
        (["method.heads_recipe.lr=0.01", "method.heads_recipe.lr_search=[0.1,0.01]"], "not both"),
        (["method.heads_recipe.epochs=30"], "within 1..30"),  # the trainer's milestones 60/120/180
        (["method.heads_recipe.calibrate=true", "dataset.val_fraction=0"], "dataset.val_fraction above 0"),
        (["method.heads_recipe.lr_search=[]"], "non-empty list"),
        (["method.heads_recipe.lr_search=[0.1,0.01,0.1]"], "holds 0.1 more than once"),
        (["method.heads_recipe.lr=-1"], "method.heads_recipe.lr"),
        (["method=kd", "+method.heads_recipe.lr=0.01"], "no heads stage"),
    ],
)
def test_a_heads_recipe_that_cannot_act_is_refused(overrides, words):
    overrides = overrides if overrides[0].startswith("method=") else ["method=dih", *overrides]
    with pytest.raises(UserError, match=words):
        compose.compose_run(overrides)


# ---- calibration -------------------------------------------------------------------------------------------


def overconfident(n=2000, classes=10, right=0.6, margin=30.0, seed=0):
    """Logits with one class ``margin`` above the others, right on a share ``right`` of the images."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(classes, (n,), generator=g)
    wrong = (labels + torch.randint(1, classes, (n,), generator=g)) % classes
    hit = torch.rand(n, generator=g) < right
    predicted = torch.where(hit, labels, wrong)
    return margin * F.one_hot(predicted, classes).double(), labels, hit.double().mean().item()


def test_calibration_lowers_the_nll_of_an_overconfident_head_to_its_optimum():
    logits, labels, right = overconfident()
    temperature = heads_choice.fit_temperature(logits, labels)
    # For logits m at the predicted class and 0 elsewhere, the NLL is least where softmax gives the predicted
    # class exactly the share of images it is right on: e^(m/T) / (e^(m/T) + C - 1) = right.
    best = 30.0 / math.log(right * 9 / (1 - right))
    assert temperature == pytest.approx(best, rel=1e-6)
    before = F.cross_entropy(logits, labels).item()
    after = F.cross_entropy(logits / temperature, labels).item()
    assert temperature > 1 and after < before / 5


def test_calibration_folds_each_temperature_into_its_head():
    torch.manual_seed(0)
    heads = LinearHeads({"stage1": (2, 3, 3), "stage2": (4, 2, 2)}, 5).double()
    features = {"stage1": torch.randn(300, 2, 3, 3).double(), "stage2": torch.randn(300, 4, 2, 2).double()}
    labels = torch.randint(5, (300,))
    before = [20 * z.detach() for z in heads(features)]  # an overconfident scale, for the fit to undo
    for head in heads.heads:
        head.weight.data.mul_(20)
        head.bias.data.mul_(20)
    found = heads_choice.calibrate(heads, before, labels)
    after = heads(features)
    for i, (z0, z1) in enumerate(zip(before, after, strict=True), 1):
        temperature = found[f"head{i}/temperature"]
        assert temperature == pytest.approx(heads_choice.fit_temperature(z0, labels))
        torch.testing.assert_close(z1.detach(), z0 / temperature)
        assert found[f"head{i}/val_nll"] < found[f"head{i}/val_nll_uncalibrated"]


# ---- the search chooses on validation, never on test -------------------------------------------------------


def colour_folder(root, classes=8, per_class=16, test_per_class=4, size=16):
    """Images whose class is their colour (plus noise), with the test split's labels rotated by one class:
    a head that learned the colours is right on validation and wrong on nearly every test image, so a choice
    made on the test split would pick the head that learned least."""
    rng = np.random.default_rng(0)
    colours = rng.integers(0, 256, (classes, 3))
    for split, count, shift in (("train", per_class, 0), ("test", test_per_class, 1)):
        for c in range(classes):
            folder = root / split / f"class{(c + shift) % classes}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                noise = rng.integers(-20, 21, (size, size, 3))
                pixels = np.clip(colours[c] + noise, 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"{c}_{i}.png")


@pytest.mark.slow  # run.py end to end: a teacher, then the heads searched
def test_the_search_chooses_on_validation_where_test_would_choose_otherwise(tmp_path):
    colour_folder(tmp_path / "data")
    run_cli(
        tmp_path,
        "dataset=folder",
        f"dataset.root={tmp_path / 'data'}",
        "dataset.val_fraction=0.25",
        "teacher=res8",
        "trainer.batch_size=16",
        "trainer.epochs=3",
        "trainer.milestones=[2]",
        "method=dih_search",
        "method.heads_recipe.lr_search=[1e-6,0.01]",
        "stage=heads",
        tiny=False,
    )
    heads = summary(tmp_path)["stages"]["heads"]
    test_would_differ = []
    for i in (1, 2, 3):
        val = {lr: heads[f"head{i}@lr{lr:g}/val_acc"] for lr in (1e-6, 0.01)}
        test = {lr: heads[f"head{i}@lr{lr:g}/acc"] for lr in (1e-6, 0.01)}
        assert heads[f"head{i}/lr"] == 0.01 and val[0.01] > val[1e-6]
        assert heads[f"head{i}/acc"] == test[0.01]  # the kept copy's test accuracy is reported
        assert test[0.01] < val[0.01]  # learned the colours: right on validation, wrong on the rotated test
        test_would_differ.append(test[1e-6] > test[0.01])
    # an unlearned head is right on some rotated test labels by chance: choosing there would have kept it
    assert any(test_would_differ)
    for i in (1, 2, 3):  # measured on the validation images, against the learning rate each head kept
        assert heads[f"head{i}/lr_x_lambda"] == pytest.approx(0.01 * heads[f"head{i}/feature_lambda_max"])
        assert heads[f"head{i}/feature_lambda_max"] > 0
    # the report names how these heads were trained, so they are never averaged with the original's
    write_report(tmp_path / "run", tmp_path / "report")
    kept = " | ".join(f"{heads[f'head{i}/acc']:.2f}" for i in (1, 2, 3))
    assert f"(linear heads, lr chosen on val from 1e-06/0.01) | {kept} |" in (
        tmp_path / "report" / "results.md"
    ).read_text()


# ---- how far past the stability edge -----------------------------------------------------------------------


class Identity(torch.nn.Module):
    """A frozen side whose one mount point is the normalised image itself."""

    def forward(self, images):
        return SimpleNamespace(features={"image": images})


def test_the_curvature_is_the_top_eigenvalue_of_the_features_second_moment():
    data = load_data(
        {
            "name": "synthetic",
            "val_fraction": 0.5,
            "split_seed": 0,
            "num_classes": 4,
            "image_size": 4,
            "train_size": 120,
            "test_size": 8,
            "seed": 0,
        }
    )
    (got,) = heads_choice.curvature(Identity(), ("image",), data, torch.device("cpu"))
    mean = torch.tensor(data.mean).view(1, -1, 1, 1)
    std = torch.tensor(data.std).view(1, -1, 1, 1)
    x = ((data.val_images.double() / 255.0 - mean) / std).flatten(1)
    second_moment = x.T @ x / len(x)  # d x d, the matrix itself rather than the Gram matrix the code uses
    assert got == pytest.approx(torch.linalg.eigvalsh(second_moment)[-1].item(), rel=1e-4)
    lines = heads_choice.stability_lines([got], [0.1])
    assert lines == {"head1/feature_lambda_max": got, "head1/lr_x_lambda": pytest.approx(0.1 * got)}
