"""``python -m dih.plan <sweep> --device-hours``: a sweep's device-hours from measured rates, against a hand
computation on a tiny sweep; each artifact counted once; stored artifacts apart; unmeasured stages labelled
assumed; an unknown device kind refused with exit 2, before torch is imported; the table's model facts equal
to the zoo's."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import ROOT

from dih.plan import hours, rates
from dih.plan.listing import main


def row(stage: str, method: str, model: str, side: str, rate: float, source: str, teacher=None) -> dict:
    return dict(stage=stage, method=method, model=model, side=side, rate=rate, source=source, teacher=teacher)


TINY_TABLE = {
    "models": {"res20": {"mmacs": 40.82, "layers": 22}, "res8": {"mmacs": 12.51, "layers": 10}},
    "kinds": {
        "tiny": {
            "description": "made-up rates for a test",
            "device": "cpu",
            "image_side": 32,
            "scaling": "same",
            "rates": [
                row("teacher", "ce", "res20", "none", 100, "t"),
                row("heads", "linear", "res20", "live", 200, "h"),
                row("cohort", "linear", "res20", "live", 1000, "c"),
                row("student", "dih", "res8", "cache", 50, "s", teacher="res20"),
                row("student", "ce", "res8", "none", 30, "ce"),
            ],
        },
        "other": {"description": "x", "device": "cuda", "image_side": 32, "scaling": "flops", "rates": []},
    },
}


@pytest.fixture
def tiny(tmp_path: Path) -> tuple[Path, Path]:
    """A rates table and a sweep: 300 synthetic images (270 after the 10% hold-out), 2 epochs; KD and DIH
    from one res20 teacher through the cache, and CE, two seeds each: 10 distinct artifacts."""
    table = tmp_path / "rates.yaml"
    table.write_text(yaml.safe_dump(TINY_TABLE))
    sweep = tmp_path / "tiny.yaml"
    common = ["experiment=smoke", "dataset.train_size=300", f"artifacts.root={tmp_path / 'artifacts'}"]
    common += ["device=cpu", "student=res8"]
    sweep.write_text(
        yaml.safe_dump(
            {
                "name": "tiny",
                "overrides": common,
                "grids": [
                    {
                        "teacher": ["res20"],
                        "method": ["kd", "dih"],
                        "seed": [30, 50],
                        "teacher_side.cache": [True],
                    },
                    {"method": ["ce"], "seed": [30, 50]},
                ],
            }
        )
    )
    return table, sweep


def estimate_json(capsys, *args: str) -> list[dict]:
    assert main([*args, "--device-hours", "--json"]) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def test_the_estimate_is_the_hand_computation(tiny, capsys):
    table, sweep = tiny
    got = estimate_json(capsys, str(sweep), f"--rates={table}")
    images, epochs, variants = 270, 2, 162
    seconds = (
        images * epochs / 100  # the teacher
        + images * epochs / 200  # DIH's heads
        + 2 * images * variants / 1000  # two cohort caches: teacher + heads (DIH), teacher alone (KD)
        + 4 * images * epochs / 50  # four cached students (KD's at DIH's measured rate)
        + 2 * images * epochs / 30  # two CE students
    )
    assert sum(x["device_hours"] for x in got) == pytest.approx(seconds / 3600)
    by = {(x["stage_kind"], x["method"]): x for x in got}
    assert {k: v["count"] for k, v in by.items()} == {
        ("teacher", "ce"): 1,
        ("heads", "linear"): 1,
        ("cohort cache", "linear"): 1,
        ("cohort cache", "none"): 1,
        ("student cached", "dih"): 2,
        ("student cached", "kd"): 2,
        ("student alone", "ce"): 2,
    }
    assert by["cohort cache", "linear"]["work"] == images * variants
    assert all(x["device_kind"] == "tiny" and not x["in_store"] for x in got)  # device=cpu picks it


def test_each_artifact_counted_once_and_stored_ones_apart(tiny, capsys):
    table, sweep = tiny
    first = estimate_json(capsys, str(sweep), f"--rates={table}")
    # the teacher, shared by the four distillation runs, is one artifact
    assert [x["count"] for x in first if x["stage_kind"] == "teacher"] == [1]
    assert sum(x["count"] for x in first) == 10
    # once the store has the teacher it is shown apart, not counted
    assert main([str(sweep), "--json"]) == 0
    listing = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    teacher = next(r["key"] for r in listing if r["kind"] == "teacher")
    store = sweep.parent / "artifacts" / teacher
    store.mkdir(parents=True)
    from dih.store.artifacts import META

    (store / META).write_text("{}")
    after = estimate_json(capsys, str(sweep), f"--rates={table}")
    stored = [x for x in after if x["in_store"]]
    assert [(x["stage_kind"], x["count"]) for x in stored] == [("teacher", 1)]
    assert sum(x["device_hours"] for x in after if not x["in_store"]) == pytest.approx(
        sum(x["device_hours"] for x in first) - 270 * 2 / 100 / 3600
    )
    assert main([str(sweep), f"--rates={table}", "--device-hours"]) == 0
    assert "already in the store, not counted: 1 artifacts" in capsys.readouterr().out


def test_an_unmeasured_method_or_model_is_labelled_assumed(tiny, capsys):
    table, sweep = tiny
    got = {(x["stage_kind"], x["method"]): x for x in estimate_json(capsys, str(sweep), f"--rates={table}")}
    assert got["student cached", "dih"]["measured"] and got["student cached", "dih"]["basis"] == "s"
    kd = got["student cached", "kd"]
    assert not kd["measured"] and kd["rate"] == 50 and "dih's rate for kd" in kd["basis"]
    assert not got["cohort cache", "none"]["measured"]
    assert main([str(sweep), f"--rates={table}", "--device-hours"]) == 0
    text = capsys.readouterr().out
    assert "ASSUMED from dih res20->res8 (cache): dih's rate for kd" in text
    assert "measured: s" in text
    # another model: assumed at the same rate (scaling same) or scaled by multiply-accumulates (flops)
    w = hours.Work("teacher", "teacher", "ce", "res8", None, "none", 1000, 32, True)
    table_ = rates.load(table)
    same = hours.rate_for(table_, table_.kinds["tiny"], w)
    assert (same.rate, same.measured) == (100, False) and "scaling: same" in same.basis
    flops = hours.rate_for(table_, table_.kinds["tiny"], w, "flops")
    assert flops.rate == pytest.approx(100 * 40.82 / 12.51) and not flops.measured
    big = hours.Work("teacher", "teacher", "ce", "res20", None, "none", 1000, 64, True)  # 64px images
    assert hours.rate_for(table_, table_.kinds["tiny"], big).rate == pytest.approx(25)


def test_the_cifar100_grid_with_the_h200_rates(capsys):
    """The issue's figures: 7 teachers, 21 heads, 21 hints, 6 assistants, 20 caches, 168 students; about
    150 H200-hours (docs/performance.md says where this estimate differs from the issue's and why)."""
    got = estimate_json(capsys, str(ROOT / "multirun_sweeps" / "cifar100.yaml"), "device=cuda")
    assert {x["device_kind"] for x in got} == {"h200"}
    count = lambda *kinds: sum(x["count"] for x in got if x["stage_kind"] in kinds)  # noqa: E731
    assert (count("teacher"), count("heads"), count("hint"), count("assistant"), count("cohort cache")) == (
        7, 21, 21, 6, 20,
    )  # fmt: skip
    assert count("student live", "student cached", "student alone") == 168
    hours_of = lambda kind: sum(x["device_hours"] for x in got if x["stage_kind"] == kind)  # noqa: E731
    assert hours_of("teacher") == pytest.approx(7 * 45000 * 200 / 1150 / 3600)
    assert hours_of("cohort cache") == pytest.approx(20 * 45000 * 162 / 12479 / 3600)
    assert 140 < sum(x["device_hours"] for x in got) < 160


def test_unknown_device_kind_is_refused_before_torch(tiny, tmp_path):
    """One sentence listing the known kinds, exit 2, and torch never imported."""
    table, sweep = tiny
    code = (
        "import sys\n"
        "class NoTorch:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'torch' or name.startswith('torch.'):\n"
        "            raise ImportError('torch is blocked')\n"
        "sys.meta_path.insert(0, NoTorch())\n"
        "from dih.plan.listing import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    for extra in ([], [f"--rates={table}"]):
        args = [sys.executable, "-c", code, str(sweep), "--device-hours", "--device-kind=a100", *extra]
        proc = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 2, proc.stderr
        lines = proc.stderr.splitlines()
        known = "cpu-2core, h200" if not extra else "other, tiny"
        assert len(lines) == 1, lines
        assert lines[0].startswith("error: No measured rates for device kind 'a100'")
        assert f"choose --device-kind= one of: {known}" in lines[0]
    assert not (tmp_path / "artifacts").exists()


def test_a_device_type_without_rates_and_a_missing_table_are_refused(tiny, capsys):
    table, sweep = tiny
    assert main([str(sweep), f"--rates={table}", "--device-hours", "device=cpu", "--device-kind=other"]) == 2
    assert "no measured teacher rate" in capsys.readouterr().err
    assert main([str(sweep), f"--rates={table.parent / 'nope.yaml'}", "--device-hours"]) == 2
    assert "No rates table" in capsys.readouterr().err


def test_the_tables_model_facts_are_the_zoos():
    """The multiply-accumulates and weight layers the scaling reads, counted on the zoo's models."""
    import torch
    from torch import nn

    from dih.models import MODEL_NAMES, build_model

    table = rates.load()
    assert sorted(table.mmacs) == sorted(MODEL_NAMES)
    for name in MODEL_NAMES:
        model, macs = build_model(name, 100).eval(), []

        def count(mod, inputs, out, macs=macs):
            if isinstance(mod, nn.Conv2d):
                macs.append(out.numel() * mod.in_channels // mod.groups * math.prod(mod.kernel_size))
            elif isinstance(mod, nn.Linear):
                macs.append(mod.in_features * mod.out_features)

        for mod in model.modules():
            mod.register_forward_hook(count)
        with torch.no_grad():
            model(torch.zeros(1, 3, 32, 32))
        assert sum(macs) / 1e6 == pytest.approx(table.mmacs[name], abs=0.01), name
        assert table.layers[name] == sum(isinstance(m, (nn.Conv2d, nn.Linear)) for m in model.modules())


def test_a_folder_not_here_is_refused_unless_its_size_is_assumed(tmp_path, capsys):
    args = ["dataset=folder", f"dataset.root={tmp_path / 'nope'}", "method=ce", "device=cpu"]
    args += [f"artifacts.root={tmp_path / 'artifacts'}"]
    assert main([*args, "--device-hours"]) == 2
    assert "pass --train-images=N to assume its size" in capsys.readouterr().err
    (got,) = estimate_json(capsys, *args, "--train-images=1000")
    assert got["work"] == 1000 * 200 and not got["work_counted"]
    assert not got["measured"] and "size unknown" in got["basis"]  # a folder's image size is its files'
