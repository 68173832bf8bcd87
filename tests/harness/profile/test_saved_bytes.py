"""Counting what autograd keeps, and CPU autocast following CUDA's policy."""
from __future__ import annotations

import pytest
import torch

from harness.profile.saved_bytes import count_saved_bytes, cuda_autocast_policy, measure_saved_bytes


def test_each_storage_counts_once_and_parameters_not_at_all():
    lin = torch.nn.Linear(8, 8)
    x = torch.randn(4, 8, requires_grad=True)
    # x is kept by the Linear and twice by x @ x.t() (once counted), tanh keeps its
    # output; the weight is excluded
    y, saved = count_saved_bytes(lambda: torch.tanh(lin(x)) + (x @ x.t()).sum(),
                                 exclude=lin.parameters())
    assert y.shape == (4, 8)
    assert sorted(s.nbytes for s in saved) == [4 * 8 * 4, 4 * 8 * 4]
    assert all(s.dtype == "float32" for s in saved)


def test_cuda_policy_runs_softmax_in_float32_and_is_removed_on_exit():
    x = torch.randn(3, 5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert (x @ x.t()).softmax(-1).dtype == torch.bfloat16      # CPU's own policy
        with cuda_autocast_policy():
            assert (x @ x.t()).softmax(-1).dtype == torch.float32   # CUDA's
            assert torch.nn.functional.softplus((x @ x.t())).dtype == torch.float32
        assert (x @ x.t()).softmax(-1).dtype == torch.bfloat16


def test_bad_precision():
    with pytest.raises(ValueError, match="unknown precision 'fp16'; allowed: float32, bf16"):
        measure_saved_bytes("zipformer-s", "fp16")
