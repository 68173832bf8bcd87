"""The device-free memory proxies (issue 22): LiveBytes counts a known allocation
pattern exactly, and a Zipformer training step reads nothing back to the host in
its forward or backward pass (HostSyncs)."""
from __future__ import annotations

import random

import torch

from harness.profile.host_syncs import HostSyncs
from harness.profile.live_bytes import LiveBytes, peak_live_bytes
from variants import build_model, fast_paths


def test_live_bytes_counts_new_storages_once_and_drops_freed_ones():
    w = torch.randn(100, 100, requires_grad=True)      # before entering: not counted
    x = torch.randn(10, 100)
    with LiveBytes() as m:
        a = torch.empty(1000)                           # 4000 bytes
        assert m.current == 4000
        v = a.view(10, 100)                             # a view: no new storage
        a.add_(1.0)                                     # in place: none either
        assert m.current == 4000
        h = x @ w                                       # (10, 100) float32
        y = h.relu()
        assert m.current == 4000 + 4000 + 4000
        del a, v                                        # freed with its last view
        assert m.current == 8000
        y.sum().backward()                              # w.grad: 40000 bytes, counted in backward
        assert w.grad is not None and m.current >= 8000 + 40000
        peak = m.peak
        del h, y
        assert m.current == 40000 and m.peak == peak >= 48000      # w.grad alone is left
    assert m.allocations >= 4


def test_peak_is_the_largest_live_total():
    def pattern():
        big = torch.empty(10_000, dtype=torch.uint8)    # 10000
        del big
        small = [torch.empty(1000, dtype=torch.uint8) for _ in range(3)]   # 3000 live
        return len(small)
    assert peak_live_bytes(pattern) == (3, 10_000)


def _train_step(model, x, lens, seed):
    random.seed(seed)
    torch.manual_seed(seed)
    out, _ = model.forward_encoder(x, lens)
    return out.square().mean()


def test_zipformer_training_step_has_no_host_sync():
    # the paths a GPU takes (fast_paths.device_independent): there a read back to the host
    # waits for the device; the CPU-only fast paths may read values (free on the CPU, e.g.
    # whether every utterance keeps ConvNeXt's branch)
    torch.manual_seed(0)
    model = build_model("zipformer-tiny", objective="ctc").train()
    model.set_batch_count(30000.0)
    x, lens = torch.randn(2, 120, 80), torch.tensor([120, 97])
    with fast_paths.device_independent():
        for seed in range(3):
            with HostSyncs() as fwd:
                loss = _train_step(model, x, lens, seed)
            assert fwd.calls == []
            with HostSyncs() as bwd:
                loss.backward()
            # the Whiteners decide on the device too (issue 22): nothing is read back
            assert bwd.calls == [], bwd.calls


def test_host_syncs_names_the_line():
    t = torch.tensor([3, 1])
    with HostSyncs() as s:
        n = int(t.min())
    assert n == 1 and len(s.calls) == 1 and "test_live_bytes.py" in s.calls[0]
