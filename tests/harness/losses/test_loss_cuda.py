"""The losses and searches on a GPU give the CPU's results (skipped without a GPU)."""
from __future__ import annotations

import copy

import pytest
import torch

from harness.decoding import decode
from harness.losses import LossConfig, compute_loss

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU: CUDA checks skipped")


@pytest.mark.parametrize("objective", [("transducer", "ctc", "attention")])
def test_cuda_matches_cpu(tiny_model, objective):
    cpu = tiny_model(objective).eval()
    gpu = copy.deepcopy(cpu).cuda()
    torch.manual_seed(4)
    feats, lens = torch.randn(3, 120, 80), torch.tensor([120, 100, 70])
    tokens = [[1, 2, 3, 4], [5, 6], [7, 7, 8]]
    cfg = LossConfig(rnnt_backend="torch")
    loss_cpu, info_cpu = compute_loss(cpu, feats, lens, tokens, 3000, cfg)
    loss_gpu, info_gpu = compute_loss(gpu, feats.cuda(), lens.cuda(), tokens, 3000, cfg)
    for key in ("simple_loss", "pruned_loss", "ctc_loss", "attention_loss"):
        assert info_gpu[key] == pytest.approx(info_cpu[key], rel=1e-3)
    loss_gpu.backward()
    assert all(torch.isfinite(p.grad).all() for p in gpu.parameters() if p.grad is not None)
    for method in ("greedy_search", "modified_beam_search", "ctc_greedy_search", "attention_rescoring"):
        assert decode(gpu, feats.cuda(), lens.cuda(), method) == decode(cpu, feats, lens, method)
