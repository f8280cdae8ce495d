"""Where bf16 runs natively, decided per device without the device: the rule ``teacher_side.bf16=auto``
follows and the warning a run on an emulating device gives."""

import logging

import pytest
import torch

from dih.device import cpu_has_native_bf16, cuda_has_native_bf16, planned_device_type, resolve_device
from dih.errors import UserError
from dih.stages.runtime import Runtime
from dih.teacher_side.precision import bf16_checked, bf16_warning


@pytest.mark.parametrize(
    ("capability", "native"),
    [((6, 1), False), ((7, 0), False), ((7, 5), False), ((8, 0), True), ((9, 0), True)],
)
def test_bf16_tensor_cores_start_at_ampere(capability, native):
    assert cuda_has_native_bf16(capability) is native


def test_auto_is_on_for_cuda_and_native_cpus_only():
    assert bf16_checked("cuda") is True
    assert bf16_checked("cpu") is cpu_has_native_bf16()
    assert bf16_checked("mps") is False


@pytest.mark.skipif(cpu_has_native_bf16(), reason="this CPU runs bf16 natively")
def test_an_emulating_device_warns_once_and_names_the_fix(caplog):
    rt = Runtime(device=torch.device("cpu"))
    assert "teacher_side.bf16=false" in bf16_warning(rt.device)
    with caplog.at_level(logging.WARNING, logger="dih.stages.runtime"):
        assert rt.speed(True).bf16 and not rt.speed(False).bf16
        rt.speed(True)
    assert [r.getMessage() for r in caplog.records] == [bf16_warning(rt.device)]


@pytest.mark.skipif(not cpu_has_native_bf16(), reason="this CPU emulates bf16")
def test_a_native_cpu_does_not_warn():
    assert bf16_warning(torch.device("cpu")) is None


@pytest.mark.skipif(torch.backends.mps.is_available(), reason="this machine has MPS")
def test_mps_where_torch_has_none_is_one_sentence():
    """torch.device('mps') is made anywhere; the first tensor on it failed with NotImplementedError."""
    with pytest.raises(UserError, match=r"^device=mps was asked for but this torch has no MPS .*device=auto"):
        resolve_device("mps")
    assert planned_device_type("mps") == "mps"  # a plan may be made where the jobs' device is not


@pytest.mark.parametrize("name", ["meta", "xla", "hpu"])
def test_device_kinds_runs_are_not_made_for_are_refused(name):
    for check in (resolve_device, planned_device_type):
        with pytest.raises(UserError, match=f"device={name} is not supported; use device=auto, cpu"):
            check(name)
