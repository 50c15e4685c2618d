"""The one Trainer: what it switches off on a CPU-only machine."""
import os

import pytest
import torch

from lottery.training.trainer import runtime_cuda_probe


@pytest.mark.skipif(not torch.backends.cuda.is_built() or torch.cuda.device_count() > 0,
                    reason="only a CUDA build of torch on a machine without GPUs probes NVML per step")
def test_cpu_runs_skip_the_per_step_nvml_probe(monkeypatch):
    monkeypatch.setenv("PYTORCH_NVML_BASED_CUDA_CHECK", "1")  # what importing Lightning does
    with runtime_cuda_probe(on_cpu=True):
        assert "PYTORCH_NVML_BASED_CUDA_CHECK" not in os.environ
        assert not torch.cuda.is_available()
    assert os.environ["PYTORCH_NVML_BASED_CUDA_CHECK"] == "1"  # restored for whatever runs next
    with runtime_cuda_probe(on_cpu=False):
        assert os.environ["PYTORCH_NVML_BASED_CUDA_CHECK"] == "1"
