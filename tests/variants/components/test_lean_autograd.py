"""The memory-lean autograd functions give the plain implementations' outputs and
gradients (float32 and bfloat16) while keeping less for the backward pass."""
from __future__ import annotations

import random
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from variants import fast_paths
from variants.components import cpu_kernels
from harness.profile.saved_bytes import count_saved_bytes, cuda_autocast_policy
from variants.components.activation_dropout_linear import activation_dropout_linear
from variants.components.attention_weights import (MultiHeadAttentionWeights, PenalizeAbsValuesGt,
                                                   attention_softmax)
from variants.components.bias_norm import BiasNorm
from variants.components.convolution_module import ConvolutionModule
from variants.components.feed_forward import FeedForward
from variants.components.swoosh import DERIV_MAX, DERIV_MIN, Swish, SwooshL, SwooshR

STEP = (DERIV_MAX - DERIV_MIN) / 255


def grads(fn, *inputs):
    """fn's output and the gradients of a fixed random projection of it w.r.t. inputs."""
    inputs = [t.detach().clone().requires_grad_(True) for t in inputs]
    y = fn(*inputs)
    g = torch.randn(y.shape, generator=torch.Generator().manual_seed(1)).to(y.dtype)
    gs = torch.autograd.grad(y, inputs, g)
    return y.detach(), gs


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("module, offset, formula", [
    (SwooshR(), 1.0, lambda x: torch.add(nn.functional.softplus(x - 1.0), x, alpha=-0.08) - 0.313261687),
    (SwooshL(), 4.0, lambda x: torch.add(nn.functional.softplus(x - 4.0), x, alpha=-0.08) - 0.035)])
@pytest.mark.parametrize("c_loop", [False, True])
def test_swoosh_keeps_a_byte_derivative(dtype, module, offset, formula, c_loop, one_thread):
    """Swoosh's value (torch's softplus formula: bit for bit on the torch paths, within
    float32 roundings in the C loop of csrc/swoosh.c) and its rounded derivative."""
    torch.manual_seed(0)
    x = (torch.randn(64, 50) * 4).to(dtype).requires_grad_(True)
    with cpu_kernels.disabled(not c_loop):
        y = module(x)
    assert y.dtype == dtype
    if c_loop:
        tol = 1e-6 if dtype == torch.float32 else 2.0 ** -8     # a bfloat16 rounding may flip
        assert torch.allclose(y.float(), formula(x.float()).to(dtype).float(), rtol=tol, atol=tol)
    else:
        assert torch.equal(y, formula(x.float()).to(dtype))
    (gx,) = torch.autograd.grad(y, x, torch.ones_like(y))
    exact = torch.sigmoid(x.detach().float() - offset) - 0.08
    assert torch.allclose(module.fn_and_deriv(x.detach().float())[1], exact)
    # half a quantization step at most, unbiased on average
    tol = STEP / 2 * 1.01 if dtype == torch.float32 else STEP / 2 + 0.005  # bf16 rounds the product
    assert (gx.float() - exact).abs().max() <= tol
    assert abs((gx.float() - exact).mean()) < STEP / 10
    with fast_paths.device_independent():      # what a GPU keeps (the CPU keeps the level)
        _, saved = count_saved_bytes(lambda: module(x))
    assert [s.dtype for s in saved] == ["uint8"]


def test_swish_is_unchanged():
    x = torch.randn(10, requires_grad=True)
    y, (gx,) = grads(Swish(), x)
    yp, (gp,) = grads(lambda t: t * torch.sigmoid(t), x)
    assert torch.equal(y, yp) and torch.allclose(gx, gp)


@pytest.mark.parametrize("activation", [SwooshL(), SwooshR(), Swish()])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("c_loop", [False, True])
def test_activation_dropout_linear_equals_plain(activation, dtype, c_loop, one_thread):
    """Bit for bit with torch's arithmetic; the C loop of the CPU fast path (one thread:
    activation, derivative and mask in one pass) within float32 roundings."""
    torch.manual_seed(0)
    lin = nn.Linear(24, 8).to(dtype)
    x = (torch.randn(3, 7, 24) * 3).to(dtype)
    mask = (torch.rand(3, 1, 24) > 0.2).float() / 0.8

    def lean(x, w, b):
        return activation_dropout_linear(x, activation, SimpleNamespace(weight=w, bias=b), mask)

    def plain(x, w, b):
        y = (activation.fn(x.float()) * mask).to(dtype)
        return nn.functional.linear(y, w, b)

    with cpu_kernels.disabled(not c_loop):
        y, g = grads(lean, x, lin.weight.detach(), lin.bias.detach())
    with cpu_kernels.disabled():
        yp, gp = grads(plain, x, lin.weight.detach(), lin.bias.detach())
    if c_loop:
        assert torch.allclose(y, yp, rtol=1e-5, atol=1e-6) if dtype == torch.float32 else \
            torch.allclose(y.float(), yp.float(), rtol=2e-2, atol=2e-2)
    else:
        assert torch.equal(y, yp)
    tol = 1e-5 if dtype == torch.float32 else 2e-2
    for a, b in zip(g, gp):
        assert torch.allclose(a.float(), b.float(), rtol=tol, atol=tol)


def test_feed_forward_and_convolution_module_match_plain_autograd(monkeypatch):
    """Same seeds, same module: the fused path against activation -> dropout -> Linear."""
    import variants.components.convolution_module as cm
    import variants.components.feed_forward as ff

    def plain(x, act, lin, mask=None):
        y = act.fn(x)
        return lin(y if mask is None else y * mask)

    torch.manual_seed(0)
    for m, args in ((FeedForward(16, 32, dropout=0.3), ()), (ConvolutionModule(16, 5), (None,))):
        m.train()
        x = torch.randn(2, 9, 16, requires_grad=True)
        out = []
        for fused in (True, False):
            if not fused:
                monkeypatch.setattr(ff, "activation_dropout_linear", plain)
                monkeypatch.setattr(cm, "activation_dropout_linear", plain)
            torch.manual_seed(3)
            random.seed(3)
            y = m(x, *args)
            out.append((y, torch.autograd.grad(y.square().sum(), [x] + list(m.parameters()))))
        monkeypatch.undo()
        (y1, g1), (y2, g2) = out
        if cpu_kernels.usable(x):      # the fused path's C loop: within float32 roundings
            assert torch.allclose(y1, y2, rtol=1e-5, atol=1e-6)
        else:
            assert torch.equal(y1, y2)
        for a, b in zip(g1, g2):
            assert torch.allclose(a, b, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("channel_dim, shape", [(-1, (2, 5, 12)), (1, (2, 12, 3, 4))])
def test_bias_norm_gradients_equal_plain(channel_dim, shape):
    torch.manual_seed(0)
    m = BiasNorm(shape[channel_dim], channel_dim=channel_dim).eval()   # eval: no limit
    with torch.no_grad():
        m.bias.normal_()
        m.log_scale.fill_(0.3)
    x = torch.randn(shape, dtype=torch.float64)
    m = m.double()
    bshape = [1] * len(shape)
    bshape[channel_dim] = -1

    def plain(x, b, ls):
        rms = torch.mean((x - b.view(bshape)) ** 2, dim=channel_dim, keepdim=True).clamp_min(1e-20).sqrt()
        return x / rms * ls.exp()

    def lean(x, b, ls):
        return torch.func.functional_call(m, {"bias": b, "log_scale": ls}, (x,))

    y, g = grads(lean, x, m.bias.detach(), m.log_scale.detach())
    yp, gp = grads(plain, x, m.bias.detach(), m.log_scale.detach())
    assert torch.equal(y, yp)
    for a, b in zip(g, gp):
        assert torch.allclose(a, b, rtol=1e-9, atol=1e-12)
    # keeps x and the per-frame RMS only
    _, saved = count_saved_bytes(lambda: m(x.requires_grad_(True)), exclude=m.parameters())
    assert sorted(s.nbytes for s in saved) == sorted([x.numel() * 8, x.numel() * 8 // shape[channel_dim]])


def test_bias_norm_bf16_autocast_matches_plain():
    """bf16 input under CUDA's autocast policy: same float32 output, gradients within bf16 rounding."""
    torch.manual_seed(0)
    m = BiasNorm(12).eval()
    x = (torch.randn(3, 4, 12) * 2).bfloat16()

    def plain(x, b, ls):
        return x / torch.mean((x - b) ** 2, -1, keepdim=True).clamp_min(1e-20).sqrt() * ls.exp()

    def lean(x, b, ls):
        return torch.func.functional_call(m, {"bias": b, "log_scale": ls}, (x,))

    params = (m.bias.detach(), m.log_scale.detach())
    with cuda_autocast_policy(), torch.autocast("cpu", dtype=torch.bfloat16):
        y, g = grads(lean, x, *params)
        yp, gp = grads(plain, x, *params)
    assert y.dtype == yp.dtype == torch.float32 and torch.equal(y, yp)
    for a, b in zip(g, gp):
        assert a.dtype == b.dtype and torch.allclose(a.float(), b.float(), rtol=2e-2, atol=2e-2)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_attention_softmax_equals_plain(dtype):
    torch.manual_seed(0)
    x = (torch.randn(4, 6, 6) * 3).to(dtype)
    y, (g,) = grads(lambda x: attention_softmax(x, -1), x)
    yp, (gp,) = grads(lambda x: x.float().softmax(-1).to(dtype), x)
    assert torch.equal(y, yp)
    tol = 1e-6 if dtype == torch.float32 else 2e-2
    assert torch.allclose(g.float(), gp.float(), rtol=tol, atol=tol)


def test_penalty_keeps_one_byte_per_score():
    x = torch.tensor([-30.0, -2.0, 0.0, 5.0, 26.0], requires_grad=True)
    (g,) = torch.autograd.grad(PenalizeAbsValuesGt.apply(x, 25.0, 0.5), x, torch.ones(5))
    assert g.tolist() == [0.5, 1.0, 1.0, 1.0, 1.5]
    _, saved = count_saved_bytes(lambda: PenalizeAbsValuesGt.apply(x, 25.0, 0.5))
    assert [s.dtype for s in saved] == ["int8"]


def test_bf16_attention_weights_keep_no_float32_copy():
    """Under CUDA's autocast policy the (heads, B, T, T) weights are kept once, in bf16."""
    torch.manual_seed(0)
    h, b, t = 2, 2, 12
    m = MultiHeadAttentionWeights(16, 8, h, 8, 4).train()
    random.seed(0)  # pos_emb_skip_rate is 0.0 outside a schedule (batch_count unset)
    x = torch.randn(b, t, 16, requires_grad=True)
    pos = torch.randn(1, 2 * t - 1, 8)
    with cuda_autocast_policy(), torch.autocast("cpu", dtype=torch.bfloat16):
        w, saved = count_saved_bytes(lambda: m(x, pos), exclude=m.parameters())
        assert w.dtype == torch.bfloat16
    big = [s for s in saved if s.nbytes >= h * b * t * t * 2]
    assert big and all(s.dtype == "bfloat16" for s in big), big
    # the plain softmax under the same policy would keep float32 weights
    with cuda_autocast_policy(), torch.autocast("cpu", dtype=torch.bfloat16):
        scores = torch.randn(h, b, t, t, requires_grad=True).bfloat16()
        _, plain = count_saved_bytes(lambda: scores.softmax(-1))
    assert [s.dtype for s in plain] == ["float32"]
