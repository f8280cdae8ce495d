"""Sweep definitions: the paper's grids expand as intended, and the laptop grid runs end to end."""

import itertools
import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import HANG_S, ROOT

from dih.sweep import commands, load, size

SWEEPS = ROOT / "multirun_sweeps"


@pytest.mark.parametrize("name", ["cifar100", "cifar10", "tiny_imagenet"])
def test_paper_grids_cover_every_method_pair_and_seed(name, tmp_path):
    sweep = load(SWEEPS / f"{name}.yaml")
    runs = set()
    for grid in sweep["grids"]:
        keys = list(grid)
        for values in itertools.product(*grid.values()):
            run = dict(zip(keys, values))
            runs.add((run["teacher"], run["student"], run["method"], run["seed"]))
    methods = {"ce", "kd", "fitnets", "takd", "at", "crd", "tofd", "mhkd", "dih"}
    assert {m for _, _, m, _ in runs} == methods
    assert {s for *_, s in runs} == {30, 50, 67}
    teachers = {t for t, *_ in runs}
    for teacher in teachers:
        expected = methods - (
            {"takd"} if teacher == "res14" else set()
        )  # no zoo model fits between res14, res8
        assert {m for t, _, m, _ in runs if t == teacher} == expected, teacher
    assert size(sweep) == len(runs)
    cmd = commands(sweep, tmp_path, ["hydra/launcher=slurm"])[0]
    assert cmd[2] == "--multirun" and f"dataset={name}" in cmd and cmd[-1] == "hydra/launcher=slurm"


@pytest.mark.slow
def test_laptop_sweep_runs_and_reports(tmp_path):
    tiny = ["dataset.image_size=16", "dataset.train_size=160", f"artifacts.root={tmp_path / 'artifacts'}"]
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "dih.sweep",
            str(SWEEPS / "laptop.yaml"),
            "--root",
            str(tmp_path / "multirun"),
            *tiny,
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=HANG_S,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summaries = [json.loads(p.read_text()) for p in (tmp_path / "multirun").rglob("summary.json")]
    assert sorted((s["method"], s["seed"]) for s in summaries) == sorted(
        (m, s) for m in ("ce", "kd", "dih") for s in (30, 50)
    )
    teacher_builds = [
        s for s in summaries if "teacher" in s["stages"] and not s["stages"]["teacher"]["reused"]
    ]
    assert len(teacher_builds) == 1, "the sweep trains its one teacher once"

    report = subprocess.run(
        [sys.executable, "-m", "dih.report", str(tmp_path / "multirun" / "laptop")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=HANG_S,
    )
    assert report.returncode == 0, report.stderr
    results = (tmp_path / "multirun" / "laptop" / "report" / "results.md").read_text()
    assert "res20" in results and results.count("(n=2)") >= 3


def test_unknown_sweep_file_names_the_known_ones(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "dih.sweep", str(Path(tmp_path) / "nope.yaml")],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2 and "cifar100.yaml" in proc.stderr and "laptop.yaml" in proc.stderr
