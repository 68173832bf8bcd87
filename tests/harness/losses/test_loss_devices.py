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

from harness.decoding import decode
from harness.losses import LossConfig, compute_loss


@pytest.mark.parametrize("objective", [("transducer", "ctc", "attention")])
def test_device_matches_cpu(tiny_model, objective, device, one_thread):
    cpu = tiny_model(objective).eval()
    heads = cpu.spec.heads
    dev = copy.deepcopy(cpu).to(device)
    torch.manual_seed(4)
    feats, lens = torch.randn(3, 120, 80), torch.tensor([120, 100, 70])
    # token ids: neither blank nor <sos/eos>, which the model reserves
    ids = [i for i in range(heads.vocab_size) if i not in (heads.blank_id, heads.sos_eos_id)]
    tokens = [ids[0:4], ids[4:6], [ids[6], ids[6], ids[7]]]
    cfg = LossConfig(rnnt_backend="torch")
    loss_cpu, info_cpu = compute_loss(cpu, feats, lens, tokens, 3000, cfg)
    loss_dev, info_dev = compute_loss(dev, feats.to(device), lens.to(device), tokens, 3000, cfg)
    for key in ("simple_loss", "pruned_loss", "ctc_loss", "attention_loss"):
        assert info_dev[key] == pytest.approx(info_cpu[key], rel=1e-3)
    loss_dev.backward()
    grads = [p.grad for p in dev.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    for method in ("greedy_search", "modified_beam_search", "ctc_greedy_search", "attention_rescoring"):
        assert decode(dev, feats.to(device), lens.to(device), method) == decode(cpu, feats, lens, method)
