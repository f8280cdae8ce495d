"""Where bf16 runs natively, decided per device without the device: the rule ``teacher_side.bf16=auto``
follows and the warning a run on an emulating device gives."""

import logging

import pytest
import torch

from dih.device import cpu_has_native_bf16, cuda_has_native_bf16
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
