"""The encoder's overhead removals: the same values as the code they replaced (bit for
bit, or within rounding where a reference path keeps the old arithmetic)."""
from __future__ import annotations

import random

import torch

from variants import fast_paths
from variants.components.convolution_module import ConvolutionModule, depthwise_conv_channels_last


def _grads(module: torch.nn.Module, *inputs: torch.Tensor) -> dict[str, torch.Tensor]:
    return {name: p.grad.clone() for name, p in module.named_parameters() if p.grad is not None} | {
        f"input{i}": x.grad.clone() for i, x in enumerate(inputs) if x.grad is not None}


def test_depthwise_conv_channels_last_equals_conv1d():
    conv = torch.nn.Conv1d(24, 24, 7, groups=24, padding=3)
    x = torch.randn(3, 40, 24)
    g = torch.randn(3, 24, 40)
    out = {}
    for channels_last in (False, True):
        conv.zero_grad(set_to_none=True)
        xx = x.clone().requires_grad_(True)
        xt = xx.transpose(1, 2)                 # (B, C, T) held as (B, T, C), as the module has it
        y = depthwise_conv_channels_last(conv, xt) if channels_last else conv(xt)
        y.backward(g)
        out[channels_last] = (y.detach(), xx.grad, conv.weight.grad, conv.bias.grad)
    (y0, gx0, gw0, gb0), (y1, gx1, gw1, gb1) = out[False], out[True]
    for a, b in ((y1, y0), (gx1, gx0), (gw1, gw0), (gb1, gb0)):     # another summation order
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    assert y1.transpose(1, 2).is_contiguous()


def test_convolution_module_fast_path_matches_reference():
    torch.manual_seed(0)
    module = ConvolutionModule(16, 5).train()
    x = torch.randn(2, 30, 16)
    mask = torch.arange(30).unsqueeze(0) >= torch.tensor([[30], [21]])
    g = torch.randn(2, 30, 16)
    out = {}
    for reference in (True, False):
        module.zero_grad(set_to_none=True)
        xx = x.clone().requires_grad_(True)
        random.seed(3)
        with fast_paths.reference_paths(reference):
            y = module(xx, mask)
            y.backward(g)
        out[reference] = (y.detach(), _grads(module, xx))
    torch.testing.assert_close(out[False][0], out[True][0], rtol=1e-5, atol=1e-7)
    for name, ref in out[True][1].items():
        torch.testing.assert_close(out[False][1][name], ref, rtol=1e-5, atol=1e-6, msg=name)


def test_gate_keeping_its_output_on_cpu_is_bit_for_bit():
    from variants.components.lean_autograd import gate

    g = torch.Generator().manual_seed(0)
    x0, s0, go = (torch.randn(3, 20, 8, generator=g) * 3 for _ in range(3))
    for fn in ("sigmoid", "tanh"):
        out = {}
        for keep in (True, False):
            x, s = x0.clone().requires_grad_(True), s0.clone().requires_grad_(True)
            if keep:
                y = gate(x, s, fn)
            else:
                with fast_paths.device_independent():     # the recomputing (GPU) path
                    y = gate(x, s, fn)
            y.backward(go)
            out[keep] = (y.detach(), x.grad, s.grad)
        assert all(torch.equal(a, b) for a, b in zip(out[True], out[False])), fn


def test_attention_softmax_with_the_mask_equals_masked_fill_then_softmax():
    from variants.components.attention_weights import attention_softmax

    g = torch.Generator().manual_seed(0)
    scores0 = torch.randn(2, 3, 7, 7, generator=g) * 5
    mask = (torch.arange(7).unsqueeze(0) >= torch.tensor([[7], [4], [1]])).unsqueeze(1)   # (B, 1, T)
    go = torch.randn(2, 3, 7, 7, generator=g)
    a, b = scores0.clone().requires_grad_(True), scores0.clone().requires_grad_(True)
    ya = attention_softmax(a, -1, mask=mask)
    yb = attention_softmax(b.masked_fill(mask, -1000.0), -1)
    ya.backward(go)
    yb.backward(go)
    assert torch.equal(ya, yb) and torch.equal(a.grad, b.grad)
    assert torch.all(a.grad.masked_select(mask.expand_as(a)) == 0)
    with torch.no_grad():
        assert torch.equal(attention_softmax(scores0, -1, mask=mask), yb)


def test_limit_param_value_backward_flips_as_the_two_step_rule():
    from variants.components.param_limit import _LimitParamValue

    x = torch.tensor([-2.0, -2.0, 0.0, 0.0, 2.0, 2.0, float("nan")], requires_grad=True)
    grad = torch.tensor([1.0, -1.0, 1.0, -1.0, 1.0, -1.0, 1.0])
    _LimitParamValue.apply(x, -1.0, 1.0).backward(grad)
    # the authors' rule, step by step: below lo a positive gradient flips, then above hi a
    # negative one
    want = grad * torch.where((grad > 0) & (x.detach() < -1.0), -1.0, 1.0)
    want = want * torch.where((want < 0) & (x.detach() > 1.0), -1.0, 1.0)
    assert torch.equal(x.grad, want)
    assert x.grad.tolist() == [-1.0, -1.0, 1.0, -1.0, 1.0, 1.0, 1.0]
