"""Fixtures for every test: ``device``, the devices a device-dependent test runs on.

Every GPU code path is tested on the CPU with the same arguments (only the
device differs), so CI, which has no GPU, runs it; the "cuda" twin is skipped
where no GPU is present.
"""
from __future__ import annotations

import pytest
import torch

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="no GPU: the CUDA twin of this CPU test is skipped"))]


@pytest.fixture(params=DEVICES)
def device(request) -> str:
    return request.param
