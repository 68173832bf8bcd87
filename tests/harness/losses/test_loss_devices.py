"""The losses and searches give on every device the CPU's results.

``device`` (tests/conftest.py): "cpu" always runs (CI has no GPU), so the
device code path (a copy of the model, features and lengths on the device,
decoding there) runs with the same arguments everywhere; "cuda" is skipped
without a GPU.
"""
from __future__ import annotations

import copy

import pytest
import torch

from support.compiled_triton import run_compiled_triton
from harness.decoding import decode
from harness.losses import LossConfig, compute_loss


@pytest.mark.parametrize("backend", ["torch", "triton"])
@pytest.mark.parametrize("objective", [("transducer", "ctc", "attention")])
def test_device_matches_cpu(tiny_model, objective, device, backend, request, one_thread):
    """The pruned loss on ``device`` with ``backend`` against the CPU's torch recursion
    (Triton on the CPU runs in its interpreter, see conftest's ``triton_interpreter``)."""
    if backend == "triton" and device == "cpu":
        request.getfixturevalue("triton_interpreter")
    cpu = tiny_model(objective).eval()
    heads = cpu.spec.heads
    dev = copy.deepcopy(cpu).to(device)
    torch.manual_seed(4)
    feats, lens = torch.randn(3, 120, 80), torch.tensor([120, 100, 70])
    # token ids: neither blank nor <sos/eos>, which the model reserves
    ids = [i for i in range(heads.vocab_size) if i not in (heads.blank_id, heads.sos_eos_id)]
    tokens = [ids[0:4], ids[4:6], [ids[6], ids[6], ids[7]]]
    loss_cpu, info_cpu = compute_loss(cpu, feats, lens, tokens, 3000, LossConfig(rnnt_backend="torch"))
    loss_dev, info_dev = compute_loss(dev, feats.to(device), lens.to(device), tokens, 3000,
                                      LossConfig(rnnt_backend=backend))
    assert info_dev["rnnt_backend"] == backend
    for key in ("simple_loss", "pruned_loss", "ctc_loss", "attention_loss"):
        assert info_dev[key] == pytest.approx(info_cpu[key], rel=1e-3)
    loss_dev.backward()
    grads = [p.grad for p in dev.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    for method in ("greedy_search", "modified_beam_search", "ctc_greedy_search", "attention_rescoring"):
        assert decode(dev, feats.to(device), lens.to(device), method) == decode(cpu, feats, lens, method)


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


@pytest.mark.skipif(not torch.cuda.is_available(),
                    reason="no GPU: the compiled kernels' CPU twin is the interpreter test file")
def test_triton_kernels_on_cuda_match_torch(tmp_path):
    """The compiled Triton kernels on the GPU against the PyTorch recursion on the GPU."""
    pytest.importorskip("triton")
    assert run_compiled_triton(CUDA_TRITON_CHECK, tmp_path).count("ok") == 4
