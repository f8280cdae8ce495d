"""FitNets' hint stage (Romero et al.): the student's guided layer, through a regressor, imitates the
teacher's hint layer, ``MSE(r(g_s), h_t)``. The later stage reuses the KD loss (SPEC s.5)."""

import torch.nn.functional as F
from torch import Tensor, nn

from dih.errors import UserError
from dih.losses.context import LossContext
from dih.losses.pairing import match_spatial


class HintRegressor(nn.Module):
    """Maps the student's ``(C, H, W)`` guided map towards the teacher's hint shape: identity when the shapes
    agree, else average-pool a spatially larger student map to the teacher's size, then 1x1 conv + BN."""

    def __init__(self, student_shape: tuple[int, ...], teacher_shape: tuple[int, ...]):
        super().__init__()
        (c_s, h_s, w_s), (c_t, h_t, w_t) = student_shape, teacher_shape
        self.size = (min(h_s, h_t), min(w_s, w_t))
        self.pool = self.size != (h_s, w_s)
        if tuple(student_shape) == tuple(teacher_shape):
            self.proj: nn.Module = nn.Identity()
        else:
            self.proj = nn.Sequential(nn.Conv2d(c_s, c_t, kernel_size=1, bias=False), nn.BatchNorm2d(c_t))

    def forward(self, g: Tensor) -> Tensor:
        return self.proj(F.adaptive_avg_pool2d(g, self.size) if self.pool else g)


def hint_loss(regressed: Tensor, hint: Tensor) -> Tensor:
    """MSE averaged over every element; a spatially larger teacher map is average-pooled to the student's."""
    regressed, hint = match_spatial(regressed.float(), hint.float())
    return F.mse_loss(regressed, hint)


class HintLoss(nn.Module):
    """``MSE(r(g_s), h_t)`` between student feature ``guided`` and teacher feature ``hint``; owns ``r``."""

    version = 1  # bump when what the loss computes changes (docs/versions.md)

    def __init__(self, context: LossContext, hint: str = "stage1", guided: str = "stage1"):
        super().__init__()
        teacher_features = context.teacher_features or {}
        if hint not in teacher_features:
            raise UserError(
                f"FitNets hint '{hint}' is not a teacher feature; choose one of {list(teacher_features)}."
            )
        if guided not in context.student_features:
            raise UserError(
                f"FitNets guided layer '{guided}' is not a student feature; "
                f"choose one of {list(context.student_features)}."
            )
        self.hint, self.guided = hint, guided
        self.regressor = HintRegressor(context.student_features[guided], teacher_features[hint])

    def forward(self, student, teacher, batch) -> tuple[Tensor, dict[str, Tensor]]:
        loss = hint_loss(self.regressor(student.features[self.guided]), teacher.features[self.hint])
        return loss, {"hint": loss}
