"""One home for --device and --dtype: the same choices and meaning in every command."""

from __future__ import annotations

import pytest
import torch

from mmv.device import DEVICES, DTYPES, mps_available, pick_device, pick_dtype
from mmv.errors import MmvError


def test_every_command_offers_the_same_choices():
    assert DEVICES == ("auto", "cpu", "cuda", "mps")
    assert DTYPES == ("auto", "float32", "bfloat16", "float16")


def test_auto_prefers_cuda_then_mps_then_cpu():
    expected = "cuda" if torch.cuda.is_available() else "mps" if mps_available() else "cpu"
    assert pick_device("auto").type == expected
    assert pick_device("cpu") == torch.device("cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_an_absent_accelerator_is_one_sentence():
    with pytest.raises(MmvError, match="device cuda was requested but torch sees no CUDA device") as failure:
        pick_device("cuda")
    assert failure.value.options == ("device",)


@pytest.mark.skipif(mps_available(), reason="this machine has MPS")
def test_an_absent_mps_is_one_sentence():
    with pytest.raises(MmvError, match="no Apple MPS device"):
        pick_device("mps")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_a_rank_gets_its_own_cuda_device():
    count = torch.cuda.device_count()
    assert pick_device("cuda", local_rank=count + 1) == torch.device("cuda", (count + 1) % count)
    assert pick_device("auto", local_rank=0) == torch.device("cuda", 0)


def test_dtypes():
    cpu = torch.device("cpu")
    assert pick_dtype("auto", cpu) == torch.float32
    assert pick_dtype("auto", torch.device("mps")) == torch.float32
    assert pick_dtype("bfloat16", cpu) == torch.bfloat16 and pick_dtype("float16", cpu) == torch.float16


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_auto_dtype_on_cuda():
    expected = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    assert pick_dtype("auto", torch.device("cuda")) == expected


def test_unknown_names_are_refused():
    with pytest.raises(MmvError, match="unknown device 'tpu'; expected one of auto, cpu, cuda, mps"):
        pick_device("tpu")
    with pytest.raises(MmvError, match="unknown dtype 'int8'"):
        pick_dtype("int8", torch.device("cpu"))
