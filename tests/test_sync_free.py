"""The training step makes no host-device synchronisation: the loader's batches (images held on the
device, or in host memory and moved a batch at a time) and the cohort cache's gather (device path, and
host path from the epoch's draws), instrumented on the CPU. Every aten op they run is recorded (a
TorchDispatchMode): none may read a tensor's value back to Python (``_local_scalar_dense``: ``.item()``,
``bool()``) or make a tensor from Python data (``lift_fresh``: ``torch.tensor``/``as_tensor`` of a list),
which on CUDA is a blocking copy. ``.cpu()``, ``.numpy()``, ``.tolist()`` and ``.item()`` are refused
outright while it runs (``.numpy()`` is no aten op, and ``.cpu()`` of a CPU tensor is none either, so they
are caught by name). Both checks fail on the code before issue 10 (per-batch constants from tuples in
``normalize``; the cache's ``.cpu().numpy()`` of the batch's index and variants)."""

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from dih.data.loader import DeviceLoader
from dih.losses import DIHLoss
from dih.models import LinearHeads, build_model
from dih.store.artifacts import ArtifactStore
from dih.teacher_side.cohort_cache import CohortCache, build
from dih.teacher_side.side import TeacherSide
from dih.train.engine import Task

MEAN, STD = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
# a value read back to the host, or a tensor made from Python data, in the step
FORBIDDEN = {"aten._local_scalar_dense", "aten.lift_fresh", "aten.lift_fresh_copy", "aten.scalar_tensor"}
HOST_READS = ("cpu", "numpy", "tolist", "item")


class Ops(TorchDispatchMode):
    """Records the name of every aten op run under it."""

    def __init__(self) -> None:
        super().__init__()
        self.names: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.names.append(str(func.overloadpacket))
        return func(*args, **(kwargs or {}))


@contextmanager
def host_reads_refused() -> Iterator[None]:
    """``torch.Tensor.cpu``/``numpy``/``tolist``/``item`` raise while it is active."""

    def refuse(name):
        def method(self, *args, **kwargs):
            raise AssertionError(f"Tensor.{name}() called in the step")

        return method

    saved = {name: getattr(torch.Tensor, name) for name in HOST_READS}
    try:
        for name in HOST_READS:
            setattr(torch.Tensor, name, refuse(name))
        yield
    finally:
        for name, method in saved.items():
            setattr(torch.Tensor, name, method)


def run_instrumented(fn):
    """``fn()`` with host reads refused, and the aten ops it ran."""
    with host_reads_refused(), Ops() as ops:
        out = fn()
    return out, ops.names


def assert_sync_free(names: list[str]) -> None:
    assert names, "nothing was recorded"
    found = sorted(set(names) & FORBIDDEN)
    assert not found, f"host syncs or tensors made from Python data in the step: {found}"


@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("device_share", [1.0, 0.0], ids=["on-device", "host-held"])
def test_loader_batches_are_sync_free(train, device_share):
    images = torch.randint(
        0, 256, (50, 3, 6, 6), dtype=torch.uint8, generator=torch.Generator().manual_seed(1)
    )
    kw = dict(batch_size=16, mean=MEAN, std=STD, device="cpu", train=train, seed=2, device_share=device_share)
    loader = DeviceLoader(images, torch.arange(50) % 7, **kw)
    assert loader.on_device == (device_share == 1.0)
    batches = loader.epoch(3)
    first, names = run_instrumented(lambda: next(batches))  # the epoch's draws and its first batch
    assert_sync_free(names)
    later, names = run_instrumented(lambda: next(batches))  # a batch of the epoch under way
    assert_sync_free(names)
    expected = list(loader.epoch(3))  # the instrumentation changes nothing
    assert torch.equal(first.images, expected[0].images) and torch.equal(later.images, expected[1].images)


def test_cached_teacher_output_is_gathered_sync_free(tmp_path):
    torch.manual_seed(0)
    teacher = build_model("res8", 5).eval()
    side = TeacherSide(teacher, LinearHeads.for_model(teacher, 5, (3, 8, 8)))
    g = torch.Generator().manual_seed(3)
    images = torch.randint(0, 256, (5, 3, 8, 8), dtype=torch.uint8, generator=g)
    artifact, _ = ArtifactStore(tmp_path).get_or_build(
        "cohort-sync", {}, lambda w: (build(side, images, MEAN, STD, 4, w), {})
    )
    cache = CohortCache(artifact, torch.device("cpu"))
    assert cache.on_device, "on the CPU the whole array in memory is the device path"
    loader = DeviceLoader(images, torch.arange(5), batch_size=4, mean=MEAN, std=STD, device="cpu", train=True)
    task = Task(build_model("res8", 5), DIHLoss(), side, cache)
    on_host = CohortCache(artifact, torch.device("cpu"), device_share=0.0)
    for batch in loader.epoch(1):
        out, names = run_instrumented(lambda b=batch: cache(b))
        assert_sync_free(names)
        assert len(out.cohort) == 4 and out.logits.dtype == torch.float32
        # the host path, given the epoch's draws, reads nothing back from the device either
        _, names = run_instrumented(lambda b=batch: on_host(b))
        assert_sync_free(names)
        # and the whole DIH student step on it, backward included
        _, names = run_instrumented(lambda b=batch: task.step(b).loss.backward())
        assert_sync_free(names)
