"""A bad setting is answered without importing torch (issue 19, item 5): run.py, ``python -m dih.plan`` and
``python -m dih.sweep`` compose and validate every run before the planner loads, so the sentence comes in
about a second rather than after torch's import; and the torch-free copies of the zoo's facts the schema
uses are held equal to the zoo."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dih.config.check import HEAD_KINDS, validate
from dih.config.compose import compose_run, group_options
from dih.config.groups import model_names
from dih.errors import UserError

ROOT = Path(__file__).resolve().parents[1]
SWEEP = str(ROOT / "multirun_sweeps" / "laptop.yaml")

# Runs each command's __main__ in one process in which importing torch fails (and is recorded), catching
# each exit: a command that reached for torch would end in an ImportError, not exit 2.
DRIVER = r"""
import contextlib, io, json, runpy, sys

tried = []


class NoTorch:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            tried.append(name)
            raise ImportError("torch is blocked in this test")


sys.meta_path.insert(0, NoTorch())
import dih  # noqa: E402  (the package itself stays torch-free)

results = []
for how, argv in json.loads(sys.argv[1]):
    err = io.StringIO()
    sys.argv = list(argv)
    code = None
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            if how == "path":
                runpy.run_path(argv[0], run_name="__main__")
            else:
                runpy.run_module(how, run_name="__main__", alter_sys=True)
        except SystemExit as exc:
            code = exc.code
        except BaseException as exc:  # noqa: BLE001 - reported to the test
            code = f"{type(exc).__name__}: {exc}"
    results.append({"argv": argv, "code": code, "stderr": err.getvalue()})
print(json.dumps({"results": results, "tried": tried, "loaded": "torch" in sys.modules}))
"""

BAD = [
    ("seed=abc", "seed is 'abc'; expected an integer in [0, 2**64 - 1]"),
    ("teacher=nope", "Unknown teacher 'nope'"),
    ("trainer.lr=-1", "trainer.lr is -1; expected a number > 0"),
]


@pytest.fixture(scope="module")
def answers(tmp_path_factory):
    """Each entry point with each bad setting, in one torch-blocked subprocess."""
    cwd = tmp_path_factory.mktemp("fast")
    cases = []
    for bad, _ in BAD:
        cases += [
            ("path", [str(ROOT / "run.py"), "experiment=smoke", bad]),
            ("path", [str(ROOT / "run.py"), "--multirun", "experiment=smoke", "method=kd,dih", bad]),
            ("dih.plan", ["dih.plan", "experiment=smoke", bad]),
            ("dih.plan", ["dih.plan", SWEEP, bad]),
            ("dih.sweep", ["dih.sweep", SWEEP, "--dry-run", f"--root={cwd}", bad]),
            ("dih.sweep", ["dih.sweep", SWEEP, "--dry-run", f"--root={cwd}", "hydra/launcher=slurm", bad]),
        ]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run(
        [sys.executable, "-c", DRIVER, json.dumps(cases)],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.splitlines()[-1]), cwd


def test_no_entry_point_reaches_for_torch(answers):
    report, _ = answers
    assert report["tried"] == [] and not report["loaded"], report["tried"]


@pytest.mark.parametrize(("bad", "sentence"), BAD, ids=[b for b, _ in BAD])
def test_a_bad_setting_gets_its_sentence_and_exit_2(answers, bad, sentence):
    report, cwd = answers
    mine = [r for r in report["results"] if bad in r["argv"]]
    assert len(mine) == 6
    for r in mine:
        assert r["code"] == 2, r
        lines = r["stderr"].splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and sentence in lines[0], r
    assert not list(cwd.iterdir())  # nothing started: no sweep directory, no store


def test_model_names_from_the_config_groups_are_the_zoos():
    from dih.models import MODEL_NAMES

    assert model_names() == group_options("teacher") == group_options("student") == tuple(MODEL_NAMES)


def test_head_kinds_of_the_schema_are_the_registrys():
    from dih.models import HEAD_KINDS as REGISTRY

    assert sorted(HEAD_KINDS) == sorted(REGISTRY)
    refusal = "Unknown kind of heads 'nope' for method.heads; choose one of: linear, mhkd, tofd"
    with pytest.raises(UserError, match=refusal):
        compose_run(["experiment=smoke", "method=dih", "method.heads=nope"])


def test_the_loss_section_is_checked_after_every_other_setting():
    """The loss's rules may import torch (the loss classes): a bad setting elsewhere is named first."""
    cfg = compose_run(["experiment=smoke", "method=kd"])
    cfg.method.loss.temperature = -1
    with pytest.raises(UserError, match="method.loss.temperature is -1"):
        validate(cfg)
    cfg.seed = "abc"
    with pytest.raises(UserError, match="seed is 'abc'"):
        validate(cfg)
