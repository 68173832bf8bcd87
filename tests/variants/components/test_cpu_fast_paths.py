"""CPU fast paths (Swoosh softplus as exp, + 1, log; activation_dropout_linear; Conv-Embed) against the reference."""
from __future__ import annotations

import random

import pytest
import torch

from variants import fast_paths
from variants.components import swoosh
from variants.components.activation_dropout_linear import activation_dropout_linear
from variants.components.swoosh import SwooshL, SwooshR


def _x(n: int = swoosh.EXP_LOG_MIN_NUMEL * 2) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    # the whole range that matters: far below the kink, around it, and past softplus's
    # threshold (z > 20), where it returns z itself
    return torch.cat([torch.randn(n - 4, generator=g) * 6, torch.tensor([-90.0, 0.0, 25.0, 60.0])])


@pytest.mark.parametrize("module", [SwooshL(), SwooshR()])
def test_exp_log_form_matches_softplus_within_roundings(module):
    x = _x().requires_grad_(True)
    g = torch.randn(x.shape, generator=torch.Generator().manual_seed(1))
    out = {}
    for reference in (True, False):
        x.grad = None
        with fast_paths.reference_paths(reference):
            y = module(x)
            y.backward(g)
            with torch.no_grad():
                y_eval = module(x)
            y_fn, d_fn = module.fn_and_deriv(x.detach())
        out[reference] = (y.detach(), x.grad.clone(), y_eval, y_fn, d_fn)
    ref, fast = out[True], out[False]
    for a, b in zip(fast, ref):
        # a few roundings of the terms (|0.08 x| + the constant), never more
        tol = 8 * torch.finfo(torch.float32).eps * (0.08 * x.detach().abs() + 1.0)
        assert torch.all((a - b).abs() <= tol)
    # the byte derivative: sigmoid is computed as before, so the same levels; the level's
    # dequantized value (one fused multiply-add) within one float32 rounding (~6e-8)
    level_ref = ((ref[1] / g - swoosh.DERIV_MIN) / swoosh._STEP).round()
    level_fast = ((fast[1] / g - swoosh.DERIV_MIN) / swoosh._STEP).round()
    keep = g.abs() > 1e-3
    assert torch.equal(level_fast[keep], level_ref[keep])
    assert torch.all((fast[1] - ref[1]).abs() <= 1.2e-7 * g.abs())


def test_exp_log_form_on_large_tensors_only_and_exact_at_the_extremes():
    assert swoosh._exp_log(torch.ones(swoosh.EXP_LOG_MIN_NUMEL))
    assert not swoosh._exp_log(torch.ones(swoosh.EXP_LOG_MIN_NUMEL - 1))
    with fast_paths.reference_paths():
        assert not swoosh._exp_log(torch.ones(swoosh.EXP_LOG_MIN_NUMEL))
    # past the threshold, where exp would overflow, at infinities and NaN: softplus's values
    z = torch.tensor([20.5, 88.0, 100.0, 1e30, float("inf"), -float("inf"), float("nan"), -200.0])
    z = z.repeat(swoosh.EXP_LOG_MIN_NUMEL)
    want = torch.nn.functional.softplus(z)
    torch.testing.assert_close(swoosh._softplus(z), want, rtol=0, atol=0, equal_nan=True)
    zz = z.clone()                                   # in place, as the no-gradient path does
    swoosh._exp_log_softplus(zz, out=zz)
    torch.testing.assert_close(zz, want, rtol=0, atol=0, equal_nan=True)


def test_activation_dropout_linear_with_the_fast_path():
    torch.manual_seed(0)
    lin = torch.nn.Linear(256, 32)
    x = (torch.randn(4, 40, 256) * 3).requires_grad_(True)
    res = {}
    for reference in (True, False):
        x.grad = None
        lin.zero_grad()
        with fast_paths.reference_paths(reference):
            y = activation_dropout_linear(x, SwooshL(), lin)
            y.square().sum().backward()
        res[reference] = (y.detach(), x.grad.clone(), lin.weight.grad.clone())
    for a, b in zip(res[False], res[True]):
        assert float((a - b).abs().max() / b.abs().max()) < 1e-5


def test_conv_embed_channels_last_first_convolution_matches_reference():
    from variants.components.conv_embed import ConvEmbed

    x = torch.randn(2, 60, 80)
    lens = torch.tensor([60, 51])
    res = {}
    for reference in (True, False):
        torch.manual_seed(0)         # a fresh module each time: the Whitener keeps state
        m = ConvEmbed(80, 32, channels=(4, 8, 16)).train()
        torch.manual_seed(1)
        random.seed(1)               # the Balancer's and Whitener's draws
        with fast_paths.reference_paths(reference):
            y, _ = m(x, lens)
            y.square().sum().backward()
        res[reference] = [y.detach(), m.conv[0].weight.grad.clone(), m.conv[0].bias.grad.clone()]
    for a, b in zip(res[False], res[True]):
        assert float((a - b).abs().max() / b.abs().max()) < 1e-4


def test_conv2d_subsampling_channels_last_matches_reference():
    from variants.components.conv2d_subsampling import Conv2dSubsampling

    torch.manual_seed(0)
    m = Conv2dSubsampling(80, 16)
    x = torch.randn(2, 40, 80)
    lens = torch.tensor([40, 31])
    res = {}
    for reference in (True, False):
        m.zero_grad()
        with fast_paths.reference_paths(reference):
            y, y_lens = m(x, lens)
            y.square().sum().backward()
        res[reference] = [y.detach()] + [p.grad.clone() for p in m.parameters()]
    for a, b in zip(res[False], res[True]):
        assert float((a - b).abs().max() / b.abs().max()) < 1e-5


@pytest.mark.parametrize("channels_last", [False, True])
def test_zero_padded_frames_is_bit_for_bit(channels_last):
    from variants.components.conv_embed import zero_padded_frames

    x = torch.randn(3, 4, 11, 5)
    x[1, 2, 9, 3] = float("nan")                     # in a padded frame: zeroed too
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    lens = torch.tensor([11, 8, 5])
    g = torch.randn(3, 4, 11, 5)
    out = {}
    for reference in (True, False):
        xi = x.detach().requires_grad_(True)
        with fast_paths.reference_paths(reference):
            y = zero_padded_frames(xi, lens, time_dim=2)
        y.backward(g)
        out[reference] = (y.detach(), xi.grad, y.is_contiguous(memory_format=torch.channels_last))
    assert torch.equal(out[True][0], out[False][0]) and torch.equal(out[True][1], out[False][1])
    assert out[False][2] == out[True][2]
