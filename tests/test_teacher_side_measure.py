"""The one measurement of the teacher side's speed (dih/teacher_side/measure.py): each use at its own batch,
both precisions, as a run builds the side, under the run's determinism settings."""

import torch

from dih.models import LinearHeads, build_model
from dih.teacher_side import measure
from dih.teacher_side.measure import BUILD, LIVE, filled, stage_batches, teacher_side_speed


def test_each_use_is_timed_at_its_own_batch_in_both_precisions(monkeypatch):
    seen = []  # (bf16, batch) of every forward that ran

    class Recording(measure.TeacherSide):
        def forward(self, images):
            seen.append((self.speed.bf16, len(images), self.speed.fold))
            return super().forward(images)

    monkeypatch.setattr(measure, "TeacherSide", Recording)
    teacher = build_model("res8", 10).eval()
    heads = LinearHeads.for_model(teacher, 10)
    images = torch.randn(5, 3, 32, 32)  # fewer than either batch: repeated to fill it
    s = teacher_side_speed(
        teacher, heads, images, stage_batches(4, 12), deterministic=True, channels_last=False,
        seconds=0.01, repeats=1, warmup=1,
    )  # fmt: skip
    assert [(u.use, u.batch_size) for u in s.uses] == [(LIVE, 4), (BUILD, 12)]
    assert all(u.fp32 > 0 and u.bf16 > 0 and u.ratio == u.bf16 / u.fp32 for u in s.uses)
    assert {(bf16, n) for bf16, n, _ in seen} == {(False, 4), (True, 4), (False, 12), (True, 12)}
    assert all(fold for *_, fold in seen)  # the side as a run builds it: batch norm folded
    assert s.use(BUILD).batch_size == 12 and s.deterministic and s.device.type == "cpu"


def test_filled_repeats_images_to_the_batch():
    x = torch.arange(3.0).view(3, 1, 1, 1)
    assert filled(x, 7).flatten().tolist() == [0, 1, 2, 0, 1, 2, 0]
