"""The fused (fast) paths compute what the reference paths compute, within float rounding.

Each pair runs in one process from the same input, weights and random seeds,
``variants.fast_paths.reference_paths()`` switching the reference arithmetic on.
"""
from __future__ import annotations

import random

import pytest
import torch

from variants import build_model, fast_paths
from variants.components import cpu_kernels
from variants.components.balancer import Balancer
from variants.components.convnext import ConvNeXt
from variants.components.swoosh import SwooshL, SwooshR
from variants.components.whitener import Whitener


def both(fn):
    """fn() under the reference paths and under the fused ones, same seeds."""
    out = []
    for reference in (True, False):
        random.seed(0)
        torch.manual_seed(0)
        with fast_paths.reference_paths(reference):
            out.append(fn())
    return out


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max().clamp(min=1e-30))


def test_switch_restores_on_exit():
    assert fast_paths.enabled()
    with fast_paths.reference_paths():
        assert not fast_paths.enabled()
        with fast_paths.reference_paths(False):
            assert fast_paths.enabled()
        assert not fast_paths.enabled()
    assert fast_paths.enabled()


@pytest.mark.parametrize("channel_dim,shape", [(1, (3, 8, 30, 5)), (-1, (40, 6))])
def test_balancer_backward_matches_reference(channel_dim, shape):
    torch.manual_seed(0)
    # channels far from zero, too small, too large, and one inside every limit
    x = torch.randn(*shape)
    scales = torch.tensor([0.01, 1.0, 30.0, 1.0, 5.0, 0.3, 1.0, 2.0][:shape[channel_dim]])
    shifts = torch.tensor([0.0, 20.0, 0.0, -3.0, 1.0, 0.0, 0.0, 0.5][:shape[channel_dim]])
    view = [1] * len(shape)
    view[channel_dim] = -1
    x = (x * scales.view(view) + shifts.view(view)).requires_grad_(True)
    g = torch.randn(*shape)
    m = Balancer(shape[channel_dim], channel_dim=channel_dim, min_abs=0.5, max_abs=4.0, prob=1.0).train()

    def run():
        x.grad = None
        m(x).backward(g)
        return x.grad.clone()

    ref, fused = both(run)
    assert not torch.equal(ref, g)                      # the constraints did act
    assert rel(fused - g, ref - g) < 1e-4               # the added gradient, relative to its size


@pytest.mark.parametrize("groups,shape", [(1, (4, 20, 12)), (3, (50, 12)), (1, (2, 9, 5, 8))])
def test_whitener_backward_matches_reference(groups, shape):
    torch.manual_seed(0)
    x = torch.randn(*shape)
    x = (x + x[..., :1] * 4.0).requires_grad_(True)           # one dominant direction
    g = torch.randn(*shape)
    w, run = _whitener_acting_on(x, g, groups)
    # below the limit neither path adds anything
    w.whitening_limit = 1e6
    ref, fused = both(run)
    assert torch.equal(ref, g) and torch.equal(fused, g)


@pytest.mark.parametrize("module", [SwooshL(), SwooshR()])
def test_swoosh_is_bit_for_bit(module, one_thread):
    """Bit for bit on the torch paths; the C loop (csrc/swoosh.c) within float32 roundings
    (its derivative levels may move by one step where a rounding crosses a level boundary:
    none here)."""
    x = (torch.randn(3, 7, 11) * 4).contiguous().requires_grad_(True)
    g = torch.randn(3, 7, 11)

    def run():
        x.grad = None
        y = module(x)
        y.backward(g)
        return y.detach(), x.grad.clone()

    with cpu_kernels.disabled():
        (y0, g0), (y1, g1) = both(run)
    assert torch.equal(y0, y1) and torch.equal(g0, g1)
    yc, gc = run()
    assert torch.allclose(yc, y1, rtol=1e-6, atol=1e-6) and torch.allclose(gc, g1, rtol=1e-6, atol=1e-6)


def test_convnext_matches_reference():
    torch.manual_seed(0)
    m = ConvNeXt(6).train()
    for p in m.parameters():                       # the 0.01 initial scale hides differences
        p.data.normal_()
    x = torch.randn(2, 6, 15, 9, requires_grad=True)
    g = torch.randn(2, 6, 15, 9)

    def run():
        x.grad = None
        m.zero_grad()
        y = m(x)
        y.backward(g)
        return [y.detach(), x.grad.clone()] + [p.grad.clone() for p in m.parameters()]

    ref, fused = both(run)
    for a, b in zip(fused, ref):
        assert a.shape == b.shape and rel(a, b) < 1e-5


@pytest.mark.parametrize("variant", ["zipformer-tiny", "conformer-tiny"])
def test_training_step_matches_reference(variant):
    """Loss and every gradient of a training step of a tiny model, in train mode
    (Balancer and Whitener acting as they do early in training)."""
    from harness.losses import compute_loss

    x = torch.randn(2, 120, 80)
    lens = torch.tensor([120, 97])
    tokens = [[5, 6, 7, 8], [9, 10, 11]]

    def run():
        # a fresh model each time: Whitener keeps its probability between steps
        model = build_model(variant, objective="ctc").train()
        model.set_batch_count(100.0)
        loss, _ = compute_loss(model, x, lens, tokens, batch_count=100.0)
        loss.backward()
        return [loss.detach()] + [p.grad.clone() for p in model.parameters() if p.grad is not None]

    ref, fused = both(run)
    assert len(ref) == len(fused) > 1
    assert rel(fused[0], ref[0]) < 1e-5
    worst = max(rel(a, b) for a, b in zip(fused[1:], ref[1:]))
    assert worst < 1e-3


def test_cpu_layout_paths_are_cpu_only_and_off_in_device_independent_blocks():
    x = torch.zeros(1)
    assert fast_paths.cpu_layout(x)
    with fast_paths.device_independent():
        assert not fast_paths.cpu_layout(x) and fast_paths.enabled()
    with fast_paths.reference_paths():
        assert not fast_paths.cpu_layout(x)
    assert fast_paths.cpu_layout(x)
    assert not fast_paths.cpu_layout(torch.zeros(1, device="meta"))


def test_eval_forward_matches_reference():
    """Inference (eval, no gradient): the in-place and layout shortcuts of the convolution
    module, NLA and ConvNeXt give the reference arithmetic's output, padding included."""
    torch.manual_seed(0)
    model = build_model("zipformer-tiny", objective="ctc").eval()
    for p in model.parameters():                   # small initial scales hide differences
        p.data.add_(0.1 * torch.randn_like(p))
    x, lens = torch.randn(2, 150, 80), torch.tensor([150, 111])

    def run():
        with torch.no_grad():
            out, out_lens = model.forward_encoder(x, lens)
        return out, out_lens

    (ref, ref_lens), (fast, fast_lens) = both(run)
    assert torch.equal(ref_lens, fast_lens)
    torch.testing.assert_close(fast, ref, rtol=1e-5, atol=1e-5)


def test_whitener_backward_on_a_transposed_channels_last_view():
    # ConvNeXt whitens (B, F, T, C) = a channels-last (B, C, T, F) tensor transposed: the
    # CPU path reads it as (frames, channels) in memory order, without a copy
    torch.manual_seed(0)
    base = torch.randn(2, 6, 7, 5).contiguous(memory_format=torch.channels_last)
    base = base + base[:, :1] * 3.0                              # one dominant direction
    x = base.transpose(1, 3).detach().requires_grad_(True)       # (2, 5, 7, 6)
    g = torch.randn(2, 6, 7, 5).contiguous(memory_format=torch.channels_last).transpose(1, 3)
    _whitener_acting_on(x, g, 1)


def _whitener_acting_on(x, g, groups):
    """A Whitener above its limit on ``x``: both paths add a gradient, the same within
    rounding; (the Whitener, the run giving x's gradient)."""
    w = Whitener(num_groups=groups, whitening_limit=1.2, prob=1.0, grad_scale=0.05).train()

    def run():
        x.grad = None
        w(x).backward(g)
        return x.grad.clone()

    ref, fused = both(run)
    assert not torch.equal(ref, g)
    assert rel(fused - g, ref - g) < 1e-4
    return w, run
