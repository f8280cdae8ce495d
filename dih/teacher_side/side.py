"""The frozen teacher side of a stage: the teacher and its extra classifiers, run once per batch without
autograd as an inference copy (batch norm folded into the convolutions; optionally converted to bf16),
optionally in channels-last layout or compiled."""

import copy
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from dih.models.heads import MountedHeads
from dih.teacher_side.fold import fold_batch_norm


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
    """How the frozen side runs. Only bf16 can change what it computes beyond float32 rounding, so only
    bf16 is in the stage specs; layout, compilation and folding are runtime choices."""

    bf16: bool = False  # run a bf16 copy: weights converted once, inputs cast, outputs back to float32
    channels_last: bool = False  # NHWC layout (pays on CUDA tensor cores)
    compile: bool = False  # torch.compile the teacher
    fold: bool = True  # batch norm folded into the convolutions (always on in runs; off only to compare)


class TeacherSide(nn.Module):
    """A trained teacher plus optional heads (``forward(features) -> list of logits``), frozen.

    ``teacher`` and ``heads`` stay the float32 modules given (other code reads their shapes and builds
    heads for the teacher); what runs is ``run_teacher`` and ``run_heads``, a frozen copy made once with
    batch norm folded and, with bf16, weights in bf16: no per-call weight casts, as autocast would make.
    """

    def __init__(self, teacher: nn.Module, heads: MountedHeads | None = None, speed: Speed = Speed()):
        super().__init__()
        self.teacher, self.heads, self.speed = teacher, heads, speed
        self.requires_grad_(False)
        self.eval()
        self.run_teacher, self.run_heads = (
            inference_copy(m, speed) if m is not None else None for m in (teacher, heads)
        )
        if speed.channels_last:
            self.to(memory_format=torch.channels_last)
        # Kept out of the module tree: the compiled wrapper shares the copy's weights, it adds none.
        object.__setattr__(
            self, "_call", torch.compile(self.run_teacher) if speed.compile else self.run_teacher
        )

    def train(self, mode: bool = True) -> "TeacherSide":
        return super().train(False)  # frozen: batch norm keeps its running statistics, always

    @torch.no_grad()
    def forward(self, images: Tensor) -> TeacherOutput:
        if self.speed.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        out = self._call(images.to(torch.bfloat16) if self.speed.bf16 else images)
        head_logits, head_embeddings = (
            self.run_heads.classify(out.features) if self.run_heads is not None else ([], [])
        )
        cohort = [z.float() for z in (*head_logits, out.logits)]
        features = {name: f.float() for name, f in out.features.items()}
        # The teacher's own classifier reads its pooled ``embedding``; heads with embeddings add theirs.
        embeddings = [e.float() for e in (*head_embeddings, features["embedding"])] if head_embeddings else []
        return TeacherOutput(logits=cohort[-1], cohort=cohort, features=features, embeddings=embeddings)


def inference_copy(module: nn.Module, speed: Speed) -> nn.Module:
    """The frozen copy of ``module`` that runs: batch norm folded (in float32, before any bf16 cast), then
    converted to bf16 where asked."""
    copied = fold_batch_norm(module) if speed.fold else copy.deepcopy(module).eval().requires_grad_(False)
    return copied.to(torch.bfloat16) if speed.bf16 else copied
