"""python -m dih.cohort_stats: how soft each classifier's distillation targets are, measured on a real tiny
dih run and checked against a formula written here."""

import math
import shutil

import pytest
import torch
from conftest import run_cli, summary

from dih.errors import UserError
from dih.report.write import write_report
from dih.tools import cohort_stats


def test_softness_against_a_hand_computation():
    logits = torch.tensor([[10.0, 0.0, 0.0], [0.0, 1.0, 2.0], [300.0, 0.0, -300.0]])
    labels = torch.tensor([0, 0, 0])
    t = 2.0
    rows = []
    for z in logits.tolist():
        e = [math.exp(v / t - max(z) / t) for v in z]
        p = [v / sum(e) for v in e]
        rows.append((max(p), -sum(q * math.log(q) for q in p if q > 0) / math.log(3), max(z) - min(z)))
    got = cohort_stats.softness(logits, labels, t)
    assert got["acc"] == pytest.approx(100 * 2 / 3)  # rows 1 and 3 pick class 0
    assert got["top_prob"] == pytest.approx(sum(r[0] for r in rows) / 3)
    assert got["entropy"] == pytest.approx(sum(r[1] for r in rows) / 3)
    assert got["logit_range"] == pytest.approx((10 + 2 + 600) / 3)
    assert got["one_hot_share"] == pytest.approx(100 / 3)  # row 3 only: row 1's top, 1/(1+2e^-5), < 0.99
    assert rows[0][0] < 0.99 < rows[2][0]


ONE_IMAGE = 1.01  # points: the tiny run tests on 100 images


@pytest.fixture(scope="module")
def dih_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cohort")
    run_cli(tmp, "method=dih", "trainer.epochs=1", "trainer.milestones=[]", "teacher_side.cache=false")
    return tmp


@pytest.mark.slow  # run.py end to end, then the tool on its run
def test_cohort_accuracies_equal_the_runs_own(dih_run, capsys):
    stages = summary(dih_run)["stages"]
    temperature, rows = cohort_stats.cohort_stats(dih_run / "run")
    assert temperature == 5.0  # the run's method.loss.temperature (SPEC's DIH default)
    names = [name for name, _ in rows]
    assert names == [f"head {i}" for i in range(1, len(rows))] + ["teacher"] and len(rows) == 4
    for i, (_, s) in enumerate(rows[:-1], start=1):
        assert s["acc"] == pytest.approx(stages["heads"][f"head{i}/acc"], abs=ONE_IMAGE)
    assert rows[-1][1]["acc"] == pytest.approx(stages["teacher"]["test/acc_last"], abs=ONE_IMAGE)
    assert cohort_stats.main([str(dih_run / "run"), "--temperature", "1"]) == 0
    table = capsys.readouterr().out
    assert "T = 1:" in table and table.count("| head ") == 3 and "| teacher |" in table


@pytest.mark.parametrize("temperature", ["-1", "0", "nan", "inf", "-inf"])
def test_a_temperature_softmax_cannot_use_is_refused(tmp_path, capsys, temperature):
    """T <= 0 inverts or breaks softmax(z / T) and nan or inf makes every target nan or uniform: one sentence
    naming --temperature, exit 2, and no table, before the run is even looked for."""
    assert cohort_stats.main([str(tmp_path / "run"), f"--temperature={temperature}"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith(f"error: --temperature is {float(temperature):g}; give a positive")
    assert err.count(". ") == 0 and err.count("\n") == 1, err


@pytest.mark.slow  # run.py end to end, then the tool on its run
def test_a_run_without_heads_is_refused(tmp_path, capsys):
    run_cli(tmp_path, "method=ce", "trainer.epochs=1", "trainer.milestones=[]")
    with pytest.raises(UserError, match="no heads"):
        cohort_stats.cohort_stats(tmp_path / "run")
    assert cohort_stats.main([str(tmp_path / "run")]) == 2
    assert "give a run of a method with heads" in capsys.readouterr().err
    assert cohort_stats.main([str(tmp_path / "nowhere")]) == 2



@pytest.mark.slow  # run.py end to end, then the tool on its run
@pytest.mark.parametrize("bf16", [True, False])
def test_the_teacher_side_runs_in_the_runs_precision_on_either_split(tmp_path, capsys, bf16):
    """A run's teacher side is measured as its student stage ran it (bf16 or not, from the student's spec),
    and on the training images with --split train."""
    run_cli(tmp_path, "method=dih", "trainer.epochs=1", "trainer.milestones=[]", f"teacher_side.bf16={bf16}")
    run = tmp_path / "run"
    stages = summary(tmp_path)["stages"]
    cohort, labels, found = cohort_stats.cohort_logits(run)
    assert cohort_stats.run_bf16(found, None) is bf16
    _, rows = cohort_stats.cohort_stats(run)
    for i, (_, s) in enumerate(rows[:-1], start=1):
        assert s["acc"] == pytest.approx(stages["heads"][f"head{i}/acc"], abs=ONE_IMAGE)
    train_cohort, train_labels, _ = cohort_stats.cohort_logits(run, split="train")
    assert len(train_labels) == 180 and all(len(z) == 180 for z in train_cohort)  # 200 less the 10% held out
    assert cohort_stats.main([str(run), "--split", "train"]) == 0
    assert "train set, T = 5:" in capsys.readouterr().out


def hand_softness(logits: torch.Tensor, temperature: float) -> tuple[float, float]:
    """(% of images whose top probability of softmax(z / T) is >= 0.99, mean entropy / log C), written out
    in log-sum-exp form so that saturated heads give no nan."""
    z = logits.double() / temperature
    shifted = z - z.max(dim=1, keepdim=True).values
    log_p = shifted - shifted.exp().sum(dim=1, keepdim=True).log()
    p = log_p.exp()
    share = 100.0 * (p.max(dim=1).values >= 0.99).double().mean().item()
    entropy = (-(p * log_p).sum(dim=1)).mean().item() / math.log(z.shape[1])
    return share, entropy


@pytest.mark.slow  # run.py end to end, then the report on its run
def test_the_student_records_how_soft_its_targets_were_and_the_report_shows_it(dih_run, tmp_path):
    student = summary(dih_run)["stages"]["student"]
    cohort, labels, _ = cohort_stats.cohort_logits(dih_run / "run", split="train")
    assert student["targets/temperature"] == 5.0
    cells = []
    for name, logits in zip(["head1", "head2", "head3", "teacher"], cohort, strict=True):
        share, entropy = hand_softness(logits, 5.0)
        assert student[f"targets/{name}/one_hot_share"] == pytest.approx(share, abs=100.0 / len(labels))
        assert student[f"targets/{name}/entropy"] == pytest.approx(entropy, abs=1e-5)
        recorded = student[f"targets/{name}/one_hot_share"], student[f"targets/{name}/entropy"]
        cells.append(f"{recorded[0]:.1f} / {recorded[1]:.3f}")
    write_report(dih_run, tmp_path / "report")
    table = (tmp_path / "report" / "results.md").read_text().split("## How soft the targets were")[1]
    row = next(line for line in table.splitlines() if "(linear heads)" in line)
    assert row.endswith("| 5 | " + " | ".join(cells) + " |")


@pytest.mark.slow  # run.py end to end: a KD student of the same teacher beside the DIH run
def test_a_kd_student_of_the_same_teacher_is_its_own_row_and_leaves_the_cohorts_columns(dih_run, tmp_path):
    """KD's cohort is the teacher alone: its row must not take the place of the DIH heads' row (the report
    once grouped it under the linear heads' label and showed that row without its heads)."""
    both = tmp_path / "both"
    shutil.copytree(dih_run, both)
    settings = ["trainer.epochs=1", "trainer.milestones=[]", "teacher_side.cache=false"]
    run_cli(both, "method=kd", *settings, name="kd")
    write_report(both, tmp_path / "report")
    table = (tmp_path / "report" / "results.md").read_text().split("## How soft the targets were")[1]
    rows = [line for line in table.splitlines() if line.startswith("| ") and "|---" not in line][1:]
    heads_row = next(line for line in rows if "(linear heads)" in line)
    kd_row = next(line for line in rows if "(teacher alone)" in line)
    assert "–" not in heads_row and heads_row.count("/") >= 4
    assert kd_row.split(" | ")[-1] == heads_row.split(" | ")[-1]  # one teacher: the same teacher column
