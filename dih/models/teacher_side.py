"""The frozen teacher side of a distillation stage: the teacher and its extra classifiers, run once per
batch without autograd."""

from dataclasses import dataclass

import torch
from torch import Tensor, nn


@dataclass
class TeacherOutput:
    """What a student loss sees of the teacher side."""

    logits: Tensor  # the teacher's own final classifier
    cohort: list[Tensor]  # every classifier of the teacher side, shallowest head first, ``logits`` last
    features: dict[str, Tensor]


class TeacherSide(nn.Module):
    """A trained teacher plus optional heads (``forward(features) -> list of logits``), frozen."""

    def __init__(self, teacher: nn.Module, heads: nn.Module | None = None):
        super().__init__()
        self.teacher, self.heads = teacher, heads
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> "TeacherSide":
        return super().train(False)  # frozen: batch norm keeps its running statistics, always

    @torch.no_grad()
    def forward(self, images: Tensor) -> TeacherOutput:
        out = self.teacher(images)
        head_logits = list(self.heads(out.features)) if self.heads is not None else []
        return TeacherOutput(logits=out.logits, cohort=[*head_logits, out.logits], features=out.features)
