"""The frozen teacher side of a stage: the teacher and its extra classifiers, run once per batch without
autograd, optionally under bf16 autocast, in channels-last layout, or compiled."""

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from dih.models.heads import MountedHeads


@dataclass
class TeacherOutput:
    """What a student loss sees of the teacher side (always float32, whatever ran inside)."""

    logits: Tensor  # the teacher's own final classifier
    cohort: list[Tensor]  # every classifier of the teacher side, shallowest head first, ``logits`` last
    features: dict[str, Tensor]
    # The vector each cohort classifier's final linear layer reads, in cohort order, where the heads expose
    # it (TOFD's auxiliary classifiers); empty otherwise.
    embeddings: list[Tensor] = field(default_factory=list)

    def detached(self) -> "TeacherOutput":
        """The same outputs cut from any autograd graph: a loss treats the teacher as a fixed target, and
        calls this first, so no gradient reaches the teacher even if the side ran with autograd on."""
        return TeacherOutput(
            logits=self.logits.detach(),
            cohort=[z.detach() for z in self.cohort],
            features={name: f.detach() for name, f in self.features.items()},
            embeddings=[e.detach() for e in self.embeddings],
        )


@dataclass(frozen=True)
class Speed:
    """How the frozen side runs. Only bf16 can change what it computes (by rounding), so only bf16 is in
    the stage specs; layout and compilation are runtime settings."""

    autocast: bool = False  # bf16 autocast
    channels_last: bool = False  # NHWC layout (pays on CUDA tensor cores)
    compile: bool = False  # torch.compile the teacher


class TeacherSide(nn.Module):
    """A trained teacher plus optional heads (``forward(features) -> list of logits``), frozen."""

    def __init__(self, teacher: nn.Module, heads: MountedHeads | None = None, speed: Speed = Speed()):
        super().__init__()
        self.teacher, self.heads, self.speed = teacher, heads, speed
        self.requires_grad_(False)
        self.eval()
        if speed.channels_last:
            self.to(memory_format=torch.channels_last)
        # Kept out of the module tree: the compiled wrapper shares the teacher's weights, it adds none.
        object.__setattr__(self, "_run_teacher", torch.compile(teacher) if speed.compile else teacher)

    def train(self, mode: bool = True) -> "TeacherSide":
        return super().train(False)  # frozen: batch norm keeps its running statistics, always

    @torch.no_grad()
    def forward(self, images: Tensor) -> TeacherOutput:
        if self.speed.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with torch.autocast(images.device.type, dtype=torch.bfloat16, enabled=self.speed.autocast):
            out = self._run_teacher(images)
            head_logits, head_embeddings = (
                self.heads.classify(out.features) if self.heads is not None else ([], [])
            )
        cohort = [z.float() for z in (*head_logits, out.logits)]
        features = {name: f.float() for name, f in out.features.items()}
        # The teacher's own classifier reads its pooled ``embedding``; heads with embeddings add theirs.
        embeddings = [e.float() for e in (*head_embeddings, features["embedding"])] if head_embeddings else []
        return TeacherOutput(logits=cohort[-1], cohort=cohort, features=features, embeddings=embeddings)
