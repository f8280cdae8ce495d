"""``trainer.compile``: the trained model's forward (and so its backward) run through ``torch.compile``.

Only the model is compiled, not the loss: a loss may draw random numbers (CRD's negatives), which compiled
code draws differently from eager code, so results would change by more than rounding; and TOFD's reads
the epoch as a Python number, on which a compiled function specialises and recompiles when it changes.
The model is most of a step's work; the optimiser step stays eager.

One graph per stage: the forward is compiled for the training batch size only, with static shapes; a batch
of any other size (the epoch's last, partial one) runs eagerly, exactly, so nothing recompiles from epoch
to epoch and CUDA graphs (which need fixed shapes) record one size. Evaluation runs eagerly: it is a small
share of an epoch at large batches, where launch overhead, what compilation saves, matters least.
"""

from torch import Tensor, compiler, nn
from torch import compile as torch_compile


def compile_mode(device_type: str) -> str | None:
    """``reduce-overhead`` (CUDA graphs: one launch per step instead of one per kernel) on CUDA; torch's
    default mode elsewhere, where CUDA graphs do not exist."""
    return "reduce-overhead" if device_type == "cuda" else None


class CompiledForward:
    """``model(images)``, compiled for batches of ``batch_size`` images; any other batch runs eagerly.

    The compiled wrapper is kept outside the learner's module tree, which holds ``model`` itself, so
    checkpoints and artifacts hold the plain state dict (no ``_orig_mod.`` prefixes)."""

    def __init__(self, model: nn.Module, batch_size: int, device_type: str):
        self.model, self.batch_size = model, batch_size
        self.mode = compile_mode(device_type)
        self.compiled = torch_compile(model, mode=self.mode, dynamic=False)

    def __call__(self, images: Tensor):
        if images.shape[0] != self.batch_size:
            return self.model(images)
        if self.mode == "reduce-overhead":
            # Each call is a new step, whose replay may reuse the previous step's output memory (consumed by
            # then: its loss and accuracy are computed from them). torch infers this after each backward;
            # the mark says it outright.
            compiler.cudagraph_mark_step_begin()
        return self.compiled(images)
