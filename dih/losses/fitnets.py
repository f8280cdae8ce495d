"""FitNets' hint stage (Romero et al.): the student's guided layer, through a regressor, imitates the
teacher's hint layer, ``MSE(r(g_s), h_t)``. The later stage reuses the KD loss (SPEC s.5)."""

import torch.nn.functional as F
from torch import Tensor, nn

from dih.errors import UserError
from dih.losses.context import LossContext
from dih.losses.pairing import as_float


def regressor_conv(student_shape: tuple[int, ...], teacher_shape: tuple[int, ...]) -> nn.Module:
    """The convolution of RepDistiller's ``ConvReg``, which takes the student's ``(C, H, W)`` map to the
    teacher's: 3x3 stride 2 (padding 1) for a student map twice the teacher's size, a 4x4 stride-2
    transposed conv (padding 1) for half, else a ``(1 + H_s - H_t) x (1 + W_s - W_t)`` conv (1x1 for equal
    sizes). A student map smaller than the teacher's by any other factor is refused."""
    if len(student_shape) != 3 or len(teacher_shape) != 3:
        raise UserError(
            f"FitNets can regress only feature maps, not shapes {student_shape} -> {teacher_shape}; "
            "choose stage outputs as the hint and guided layers."
        )
    (c_s, h_s, w_s), (c_t, h_t, w_t) = student_shape, teacher_shape
    if (h_s, w_s) == (2 * h_t, 2 * w_t):
        return nn.Conv2d(c_s, c_t, kernel_size=3, stride=2, padding=1)
    if (2 * h_s, 2 * w_s) == (h_t, w_t):
        return nn.ConvTranspose2d(c_s, c_t, kernel_size=4, stride=2, padding=1)
    if h_s >= h_t and w_s >= w_t:
        return nn.Conv2d(c_s, c_t, kernel_size=(1 + h_s - h_t, 1 + w_s - w_t))
    raise UserError(
        f"FitNets cannot regress the student's {h_s}x{w_s} guided map to the teacher's {h_t}x{w_t} hint "
        "(only a student map as large or larger, or half the size, can be); choose other hint/guided layers."
    )


class HintRegressor(nn.Module):
    """Maps the student's ``(C, H, W)`` guided map to the teacher's hint shape: nothing where the shapes are
    identical (as the original DIH code), else RepDistiller's ``ConvReg``: ``regressor_conv``, BN, ReLU."""

    def __init__(self, student_shape: tuple[int, ...], teacher_shape: tuple[int, ...]):
        super().__init__()
        if tuple(student_shape) == tuple(teacher_shape):
            self.proj: nn.Module = nn.Identity()
        else:
            conv = regressor_conv(tuple(student_shape), tuple(teacher_shape))
            self.proj = nn.Sequential(conv, nn.BatchNorm2d(teacher_shape[0]), nn.ReLU())

    def forward(self, g: Tensor) -> Tensor:
        return self.proj(g)


def hint_loss(regressed: Tensor, hint: Tensor) -> Tensor:
    """MSE averaged over every element, as ``nn.MSELoss()``, in float32 at least."""
    return F.mse_loss(as_float(regressed), as_float(hint))


class HintLoss(nn.Module):
    """``MSE(r(g_s), h_t)`` between student feature ``guided`` and teacher feature ``hint``; owns ``r``."""

    version = 2  # bump when what the loss computes changes (docs/versions.md)

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
        teacher = teacher.detached()
        loss = hint_loss(self.regressor(student.features[self.guided]), teacher.features[self.hint])
        return loss, {"hint": loss}
