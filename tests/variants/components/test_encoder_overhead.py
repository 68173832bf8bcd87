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
