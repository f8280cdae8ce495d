"""What learns in each stage: gradients reach the learners and never the frozen teacher side."""

import torch

from dih.data.loader import DeviceLoader
from dih.losses import DIHLoss, HeadsLoss
from dih.models import LinearHeads, build_model
from dih.models.heads import HeadsOnFrozen
from dih.teacher_side.side import TeacherSide
from dih.train.engine import Task


def one_batch(classes=10, n=8):
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g)
    labels = torch.randint(0, classes, (n,), generator=g)
    loader = DeviceLoader(
        images, labels, batch_size=n, mean=(0.5,) * 3, std=(0.25,) * 3, device="cpu", train=True
    )
    return next(loader.epoch(1))


def test_distill_step_trains_student_only():
    torch.manual_seed(0)
    teacher = build_model("res14", 10)
    heads = LinearHeads.for_model(teacher, 10, (3, 32, 32))
    side = TeacherSide(teacher, heads)
    bn = next(m for m in teacher.modules() if isinstance(m, torch.nn.BatchNorm2d))
    stats_before = bn.running_mean.clone()
    task = Task(build_model("res8", 10), DIHLoss(), side)
    task.train_mode()
    side.train()  # a frozen side stays in eval mode whatever is asked of it
    out = task.step(one_batch())
    out.loss.backward()
    assert all(p.grad is None for p in side.parameters())
    assert all(p.grad is not None for p in task.model.parameters())
    assert sum(p.grad.abs().sum() for p in task.model.parameters()) > 0
    assert torch.equal(bn.running_mean, stats_before), "the teacher's BN statistics must not move"
    assert not side.training and not any(m.training for m in side.modules())
    assert len(side(one_batch().images).cohort) == 4  # 3 heads + the teacher's classifier


def test_heads_step_trains_heads_only():
    torch.manual_seed(0)
    teacher = build_model("res8", 10)
    heads = LinearHeads.for_model(teacher, 10, (3, 32, 32))
    task = Task(HeadsOnFrozen(TeacherSide(teacher), heads), HeadsLoss())
    task.train_mode()
    out = task.step(one_batch())
    out.loss.backward()
    assert set(out.parts) == {"ce_head1", "ce_head2", "ce_head3"}
    assert torch.allclose(out.loss, sum(out.parts.values()))
    assert all(p.grad is None for p in teacher.parameters())
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in heads.parameters())
    # only the heads learn and are checkpointed; the frozen teacher is no part of the learner
    assert {id(p) for p in task.learner.parameters()} == {id(p) for p in heads.parameters()}
