"""The losses and searches on a GPU give the CPU's results (skipped without a GPU)."""
from __future__ import annotations

import copy

import pytest
import torch

from compiled_triton import run_compiled_triton
from harness.decoding import decode
from harness.losses import LossConfig, compute_loss

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU: CUDA checks skipped")


@pytest.mark.parametrize("backend", ["torch", "triton"])
@pytest.mark.parametrize("objective", [("transducer", "ctc", "attention")])
def test_cuda_matches_cpu(tiny_model, objective, backend):
    cpu = tiny_model(objective).eval()
    gpu = copy.deepcopy(cpu).cuda()
    torch.manual_seed(4)
    feats, lens = torch.randn(3, 120, 80), torch.tensor([120, 100, 70])
    tokens = [[1, 2, 3, 4], [5, 6], [7, 7, 8]]
    loss_cpu, info_cpu = compute_loss(cpu, feats, lens, tokens, 3000, LossConfig(rnnt_backend="torch"))
    loss_gpu, info_gpu = compute_loss(gpu, feats.cuda(), lens.cuda(), tokens, 3000,
                                      LossConfig(rnnt_backend=backend))
    assert info_gpu["rnnt_backend"] == backend
    for key in ("simple_loss", "pruned_loss", "ctc_loss", "attention_loss"):
        assert info_gpu[key] == pytest.approx(info_cpu[key], rel=1e-3)
    loss_gpu.backward()
    assert all(torch.isfinite(p.grad).all() for p in gpu.parameters() if p.grad is not None)
    for method in ("greedy_search", "modified_beam_search", "ctc_greedy_search", "attention_rescoring"):
        assert decode(gpu, feats.cuda(), lens.cuda(), method) == decode(cpu, feats, lens, method)


CUDA_TRITON_CHECK = """
import torch
from harness.losses.mutual_information import mutual_information_recursion
from harness.losses.mutual_information_triton import interpreted, mutual_information_recursion_triton

assert not interpreted()
g = torch.Generator().manual_seed(0)
# tiny, ragged S > T, the benchmark's shape, and diagonals longer than one 256-lane block
for B, S, T in [(1, 0, 5), (3, 7, 2), (8, 100, 500), (2, 600, 300)]:
    px = torch.randn(B, S, T + 1, generator=g).cuda().requires_grad_(True)
    py = torch.randn(B, S + 1, T, generator=g).cuda().requires_grad_(True)
    ends = torch.stack([torch.randint(0, S + 1, (B,), generator=g), torch.randint(1, T + 1, (B,), generator=g)], 1)
    ends[0] = torch.tensor([S, T])
    boundary = torch.cat([torch.zeros(B, 2, dtype=torch.int64), ends], 1).cuda()
    results = []
    for fn in (mutual_information_recursion, mutual_information_recursion_triton):
        scores = fn(px, py, boundary)
        results.append((scores.detach(), *torch.autograd.grad(scores.sum(), (px, py))))
    (s0, x0, y0), (s1, x1, y1) = results
    torch.testing.assert_close(s1, s0, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(x1, x0, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(y1, y0, rtol=1e-4, atol=1e-5)
    print(B, S, T, "ok")
"""


def test_triton_kernels_on_cuda_match_torch(tmp_path):
    """The compiled Triton kernels on the GPU against the PyTorch recursion on the GPU."""
    pytest.importorskip("triton")
    assert run_compiled_triton(CUDA_TRITON_CHECK, tmp_path).count("ok") == 4
