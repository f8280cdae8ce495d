"""``trainer.compile``: the whole training step compiled, so that on CUDA it runs as a few captured graphs
instead of hundreds of kernel launches from Python (the steps of this project's small models are bound by
launches, not arithmetic: docs/performance.md).

What is compiled, all of it for the training batch size only and with static shapes:

- the step's forward: the frozen teacher side when it runs live, the trained model and the loss, as one
  function, so that AOTAutograd also compiles their backward as one graph; with
  ``mode="reduce-overhead"`` (CUDA) both are replayed as CUDA graphs;
- the optimiser step, with the learning rate held in a tensor on the parameters' device: the schedule
  fills that tensor, so a changed learning rate is a new value, never a new graph;
- evaluation's forward, for the evaluation batch size.

A batch of any other size (an epoch's last, partial one) runs the same code eagerly, so nothing recompiles
from epoch to epoch. The cohort cache's gather stays eager: it reads host-side indices. A loss that reads the
epoch as a number (TOFD's temperature, DKD's warm-up) makes torch treat it as a dynamic integer after the
first change, one recompilation per stage, not one per epoch. Compiled code rounds differently from eager
code, and draws its random numbers (CRD's negatives) from its own generator seeded from torch's, so a
compiled stage is exact against itself (resume included) and equal to an eager one up to rounding; the
checkpoint records which ran (``trainer.compile``).
"""

from collections.abc import Callable

import torch
from torch import Tensor, compiler

# What a checkpoint records of a compiled stage: the whole step. The first compiled path (the model's forward
# only, recorded as ``True``) rounded differently, so resuming one of its checkpoints warns.
RECORD = "step"


def compile_mode(device_type: str) -> str | None:
    """``reduce-overhead`` (CUDA graphs: one launch per graph instead of one per kernel) on CUDA; torch's
    default mode elsewhere, where CUDA graphs do not exist."""
    return "reduce-overhead" if device_type == "cuda" else None


def tensor_learning_rate(optimizer: torch.optim.Optimizer, device: torch.device) -> None:
    """Hold each parameter group's learning rate in a 0-d tensor on ``device``, before the schedule is made:
    the schedule then fills it in place and a compiled optimiser step reads it as data. float64, as the
    Python number it replaces: the schedule's products (0.1 x 0.1) are the eager step's."""
    for group in optimizer.param_groups:
        group["lr"] = torch.tensor(float(group["lr"]), dtype=torch.float64, device=device)


class CompiledStep:
    """``loss(batch, teacher)``, ``optimizer_step()`` and ``predict(images)`` of a ``Task`` compiled for
    batches of ``batch_size`` (training) and ``eval_batch_size`` (evaluation); any other batch runs eagerly.

    The compiled wrappers are kept outside the learner's module tree, which holds the model itself, so
    checkpoints and artifacts hold the plain state dict (no ``_orig_mod.`` prefixes)."""

    def __init__(self, task, optimizer, batch_size: int, eval_batch_size: int, device_type: str):
        self.task, self.optimizer = task, optimizer
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.mode = compile_mode(device_type)
        self._loss = torch.compile(task.loss_of, mode=self.mode, dynamic=False)
        # The optimiser step mutates its state in place; torch's default mode fuses it into a few kernels
        # (CUDA graphs would be skipped for its mutated momentum buffers anyway).
        self._optimizer_step = torch.compile(optimizer.step)
        self._predict = torch.compile(task.predict, mode=self.mode, dynamic=False)

    def _replayed(self, fn: Callable, size: int, wanted: int):
        if size != wanted:
            return None
        if self.mode == "reduce-overhead":
            # Each call is a new step, whose replay may reuse the previous step's output memory (consumed by
            # then: its loss and accuracy are computed from them). The mark says it outright.
            compiler.cudagraph_mark_step_begin()
        return fn

    def loss(self, batch, teacher):
        fn = self._replayed(self._loss, len(batch.labels), self.batch_size) or self.task.loss_of
        return fn(batch, teacher)

    def optimizer_step(self) -> None:
        if not self.optimizer.state:
            # The stage's first step creates the momentum buffers; dynamo cannot trace their creation across
            # several parameter groups (the heads stage's learning-rate search), so that one step runs
            # eagerly. A resumed stage has them already, so an uninterrupted and a resumed run compile the
            # same steps.
            self.optimizer.step()
            return
        self._optimizer_step()

    def predict(self, images: Tensor) -> dict[str, Tensor]:
        fn = self._replayed(self._predict, images.shape[0], self.eval_batch_size) or self.task.predict
        out = fn(images)
        # A replayed graph's outputs live in memory the next replay overwrites: keep what is read.
        return {name: z.clone() for name, z in out.items()} if self.mode == "reduce-overhead" else out
