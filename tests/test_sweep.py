"""Sweep definitions: the paper's grids expand as intended, and the laptop grid runs end to end."""

import itertools
import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import HANG_S, ROOT

from dih.config.sweep_file import load, size
from dih.sweep.launch import commands

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


# ---- a malformed sweep file is one sentence from dih.sweep and dih.plan ----------------------------------

BAD_FILES = [
    # (the file's text, words the sentence must contain)
    ("name: x\ngrids: [{teacher: [res8]\n", ["is not valid YAML", "line", "fix it"]),
    ("name: x\ngrids:\n  teacher: [res8]\n", ["'grids'", "is a dict", "a list of grids"]),
    ("name: x\ngrids: [[res8]]\n", ["Grid 0", "a mapping of override key"]),
    ("name: x\ngrids: [{teacher: []}]\n", ["'teacher' in grid 0", "non-empty list"]),
    ("name: x\ngrids: [{teacher: {a: 1}}]\n", ["'teacher' in grid 0", "a value or a non-empty list"]),
    ("name: x\noverrides: experiment=smoke\ngrids: [{seed: [1]}]\n", ["'overrides'", "a list of run.py"]),
    ("name: x\ngrid: [{seed: [1]}]\n", ["needs a 'name' and a list of 'grids'"]),
    ("name: x\ngrids: [{seed: [1]}]\nextra: 1\n", ["Unknown key 'extra'", "name, overrides, grids"]),
    ("name: ../../escaped\ngrids: [{seed: [1]}]\n", ["'name'", "'../../escaped'", "no '..'"]),
    ("name: /tmp/abs\ngrids: [{seed: [1]}]\n", ["'name'", "a plain relative path"]),
    ("name: a/./b\ngrids: [{seed: [1]}]\n", ["'name'", "a plain relative path"]),
]


@pytest.mark.parametrize(("text", "words"), BAD_FILES, ids=[w[0] for _, w in BAD_FILES])
@pytest.mark.parametrize("command", ["sweep", "plan"])
def test_a_malformed_sweep_file_is_one_sentence(tmp_path, capsys, text, words, command):
    import dih.plan.listing
    import dih.sweep.launch

    path = tmp_path / "bad.yaml"
    path.write_text(text)
    main = dih.sweep.launch.main if command == "sweep" else dih.plan.listing.main
    root = ["--root", str(tmp_path / "multirun"), "--dry-run"]
    args = [str(path), *root] if command == "sweep" else [str(path)]
    assert main(args) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and str(path) in lines[0], lines
    for word in words:
        assert word in lines[0], (word, lines[0])
    assert not (tmp_path / "multirun").exists() and not (tmp_path.parent / "escaped").exists()


def test_a_single_grid_value_is_a_list_of_one(tmp_path):
    """``teacher: res8`` means the one teacher res8 (it was split into letters: "Unknown teacher 'r'")."""
    path = tmp_path / "one.yaml"
    path.write_text("name: one\noverrides: [experiment=smoke]\ngrids: [{teacher: res20, seed: [1, 2]}]\n")
    sweep = load(path)
    assert sweep["grids"] == [{"teacher": ["res20"], "seed": [1, 2]}]
    cmd = commands(sweep, tmp_path, [])[0]
    assert "teacher=res20" in cmd and "seed=1,2" in cmd
    from dih.plan.listing import configs_for

    assert [c.teacher.name for c in configs_for([str(path)])] == ["res20", "res20"]


def test_a_sweep_name_may_be_a_relative_path_under_the_root(tmp_path):
    path = tmp_path / "nested.yaml"
    path.write_text("name: study/first\ngrids: [{seed: [1]}]\n")
    cmd = commands(load(path), tmp_path / "root", [])[0]
    assert f"hydra.sweep.dir={tmp_path / 'root' / 'study' / 'first' / 'grid0'}" in cmd


def test_a_second_sweep_of_the_same_name_is_refused_where_the_first_has_runs(tmp_path):
    """Run directories are named by method, models and seed under <root>/<name>/gridN: a second, different
    sweep of the same name would share them (interleaved run.log); the same sweep again may resume there."""
    from dih.errors import UserError
    from dih.sweep.launch import claim

    first = {"name": "s", "overrides": ["experiment=smoke"], "grids": [{"seed": [1, 2]}]}
    other = {**first, "grids": [{"seed": [1, 3]}]}
    sweep_dir = tmp_path / "multirun" / "s"
    claim(first, sweep_dir, ["hydra/launcher=local"], Path("first.yaml"))
    claim(other, sweep_dir, [], Path("other.yaml"))  # nothing run yet: the directory is the new sweep's
    claim(first, sweep_dir, [], Path("first.yaml"))
    (sweep_dir / "grid0" / "0_ce_res20_res8_s1").mkdir(parents=True)  # the first sweep's run
    claim(first, sweep_dir, ["hydra/launcher=slurm"], Path("first.yaml"))  # the same sweep again
    for second, extra in ((other, []), (first, ["trainer.epochs=3"])):
        with pytest.raises(UserError, match="holds the runs of another sweep named 's'") as info:
            claim(second, sweep_dir, extra, Path("second.yaml"))
        assert "give second.yaml another name: or use another --root" in str(info.value)
    assert json.loads((sweep_dir / "sweep.json").read_text())["grids"] == [{"seed": [1, 2]}]
