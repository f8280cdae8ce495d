"""Every method end to end through run.py on synthetic data, sharing one artifact store as a sweep would."""

import json

import pytest
from conftest import run_cli, summary

from dih.config.compose import group_options
from dih.config.groups import option_file

pytestmark = pytest.mark.slow

EXPECTED_STAGES = {
    "ce": ["student"],
    "kd": ["teacher", "student"],
    "dih": ["teacher", "heads", "student"],
    "fitnets": ["teacher", "hint", "student"],
    "takd": ["teacher", "assistant", "student"],
    "at": ["teacher", "student"],
    "crd": ["teacher", "student"],
    "tofd": ["teacher", "heads", "student"],
    "mhkd": ["teacher", "heads", "student"],
}
PAIR = ["teacher=res20", "student=res8", "method.assistant=res14"]
# The paper's methods first (KD trains the shared teacher), then any other method under conf/method/.
METHODS = [*EXPECTED_STAGES, *(m for m in group_options("method") if m not in EXPECTED_STAGES)]


def stages_of(method: str) -> list[str]:
    """The paper's stages of its methods; another method's are its YAML's."""
    if method in EXPECTED_STAGES:
        return EXPECTED_STAGES[method]
    return option_file("method", method)["stages"]


def test_every_method_runs_and_shares_the_teacher(tmp_path):
    teacher_keys = set()
    for method in METHODS:
        extra = PAIR if method == "takd" else PAIR[:2]
        run_cli(tmp_path, f"method={method}", *extra, name=method)
        s = summary(tmp_path, method)
        assert list(s["stages"]) == stages_of(method), method
        assert 0 <= s["test/acc_last"] <= 100
        student = s["stages"]["student"]
        assert not student["reused"] and student["epochs"] == 2
        lines = [json.loads(x) for x in (tmp_path / method / "metrics.jsonl").read_text().splitlines()]
        parts = {k for k in lines[-1] if k.startswith("train/") and k not in ("train/loss", "train/acc")}
        assert parts, f"{method} logs its loss parts"
        assert abs(sum(lines[-1][p] for p in parts) - lines[-1]["train/loss"]) < 1e-3 * abs(
            lines[-1]["train/loss"]
        )
        if "teacher" in s["stages"]:
            teacher_keys.add(s["stages"]["teacher"]["key"])
            assert s["stages"]["teacher"]["reused"] == (method != "kd"), (
                "trained once, by the first that needs it"
            )
    assert len(teacher_keys) == 1

    hint = summary(tmp_path, "fitnets")["stages"]["hint"]
    assert hint["epochs"] == 1 and "test/acc_last" not in hint  # the hint stage classifies nothing
    tofd_heads = summary(tmp_path, "tofd")["stages"]["heads"]
    assert set(tofd_heads) >= {"head1/acc", "head2/acc"} and "head3/acc" not in tofd_heads  # k-1 auxiliaries
    mhkd_heads = summary(tmp_path, "mhkd")["stages"]["heads"]  # MHKD's heads too skip the deepest stage
    assert set(mhkd_heads) >= {"head1/acc", "head2/acc"} and "head3/acc" not in mhkd_heads

    # A second TAKD student (another seed) reuses the teacher and the assistant; only the student trains.
    run_cli(tmp_path, "method=takd", *PAIR, "seed=50", name="takd50")
    again = summary(tmp_path, "takd50")["stages"]
    assert again["teacher"]["reused"] and again["assistant"]["reused"] and not again["student"]["reused"]
    assert again["assistant"]["key"] == summary(tmp_path, "takd")["stages"]["assistant"]["key"]


def test_method_that_cannot_apply_says_why(tmp_path):
    proc = run_cli(
        tmp_path, "method=takd", "teacher=res20", "student=res8", "method.assistant=res110", check=False
    )
    assert proc.returncode == 2
    assert (
        "TAKD's assistant must be smaller than the teacher res20 and larger than the student res8"
        in proc.stdout
    )
    assert "method.assistant= one of: res14" in proc.stdout
    assert not (tmp_path / "artifacts").exists() or not list(
        (tmp_path / "artifacts").glob("teacher-*/meta.json")
    )
