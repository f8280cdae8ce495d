"""The names of every metric a stage logs per epoch and sums up at its end, in one place: the engine builds
them here and the report, the tools and W&B read them back through the same functions.

Per epoch (a stage's metrics.jsonl line): ``train/loss`` and the loss's parts ``train/<part>``,
``train/acc``; ``val/acc`` and ``test/acc`` for the trained model's own classifier, ``head2/val_acc`` and
``head2/test_acc`` for the second head of a heads stage; ``time/epoch_s`` and ``time/images_per_s``.
At the end (the stage's summary in meta.json and summary.json): ``test/acc_last`` and
``test/acc_best_val`` (the test accuracy at the last epoch and at the epoch of best validation accuracy),
``head2/acc`` and ``head2/acc_best_val`` for a head, ``val/acc_best``, ``best_val_epoch``, ``epochs``,
``time/total_s`` and ``time/images_per_s``; a distilling student's ``targets/head2/one_hot_share`` and
``targets/teacher/entropy`` (how soft its teacher side's targets are, at ``targets/temperature``).
"""

from __future__ import annotations

# The classifier a stage trains (its model's own); other classifiers (the heads) go by their names.
MAIN = "main"
TEACHER = "teacher"  # the teacher's own classifier, last in a cohort
TARGETS_TEMPERATURE = "targets/temperature"
LAST, BEST_VAL = "last", "best_val"  # the two epochs a test accuracy is reported at

TRAIN_LOSS, TRAIN_ACC = "train/loss", "train/acc"
EPOCH = "epoch"
EPOCH_SECONDS, IMAGES_PER_S, TOTAL_SECONDS = "time/epoch_s", "time/images_per_s", "time/total_s"
EPOCHS, BEST_VAL_EPOCH, VAL_ACC_BEST = "epochs", "best_val_epoch", "val/acc_best"


def train(part: str) -> str:
    """The per-epoch mean of a part of the training loss: ``train/loss``, ``train/kd``..."""
    return f"train/{part}"


def head(i: int) -> str:
    """The name of a heads stage's ``i``-th head, shallowest first, from 1."""
    return f"head{i}"


def targets(classifier: str, measure: str) -> str:
    """How soft a cohort classifier's targets are (dih/teacher_side/softness.py), in a student's summary:
    ``targets/head1/one_hot_share`` (% of images whose top target probability is >= 0.99),
    ``targets/teacher/entropy`` (mean entropy / log C)."""
    return f"targets/{classifier}/{measure}"


def acc(classifier: str, split: str) -> str:
    """Per-epoch accuracy on ``split``: ``val/acc`` for the main classifier, ``head2/val_acc`` for a head."""
    return f"{split}/acc" if classifier == MAIN else f"{classifier}/{split}_acc"


def final(classifier: str, at: str) -> str:
    """Summary metric of test accuracy ``at`` the last or the best-validation epoch: ``test/acc_last``,
    ``test/acc_best_val``; ``head2/acc``, ``head2/acc_best_val``."""
    if classifier == MAIN:
        return f"test/acc_{at}"
    return f"{classifier}/acc" if at == LAST else f"{classifier}/acc_best_val"


def classifiers_in(line: dict) -> list[str]:
    """The classifiers whose test accuracy an epoch line holds, the main one first."""
    named = [k.split("/")[0] for k in line if k == acc(k.split("/")[0], "test")]
    return ([MAIN] if acc(MAIN, "test") in line else []) + named


def head_accuracies(summary: dict, at: str = LAST) -> list[float]:
    """A heads stage's test accuracy of each head, shallowest first (``head1/acc``, ``head2/acc``...)."""
    found = []
    while final(head(len(found) + 1), at) in summary:
        found.append(summary[final(head(len(found) + 1), at)])
    return found
