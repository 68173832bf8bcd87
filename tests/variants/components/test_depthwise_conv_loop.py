"""The convolution module's depth-wise convolution as C loops (csrc/depthwise_conv.c)
against torch's convolution: output, the three gradients and the layout."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from variants.components import convolution_module as cm
from variants.components import cpu_kernels
from variants.components.convolution_module import ConvolutionModule

pytestmark = pytest.mark.skipif(cpu_kernels.library() is None, reason="no C compiler: the loops are off")


@pytest.mark.parametrize("b, t, c, k", [(5, 116, 64, 15), (3, 7, 8, 15), (2, 1, 4, 3), (2, 40, 24, 31)])
def test_loop_matches_the_convolution(b, t, c, k, one_thread):
    """Shorter sequences than the kernel included (every frame then sees the padding)."""
    torch.manual_seed(0)
    conv = nn.Conv1d(c, c, k, groups=c, padding=k // 2)
    x0 = torch.randn(b, t, c).transpose(1, 2)          # (B, C, T) held as (B, T, C)
    g = torch.randn(b, c, t)
    out = {}
    for loop in (True, False):
        x = x0.detach().requires_grad_(True)
        conv.zero_grad()
        with cpu_kernels.disabled(not loop):
            assert cm._c_loop_applies(conv, x) == loop
            y = cm.depthwise_conv_channels_last(conv, x)
        y.backward(g)
        out[loop] = [y.detach(), x.grad, conv.weight.grad.clone(), conv.bias.grad.clone()]
        assert y.transpose(1, 2).is_contiguous() and x.grad.stride() == x.stride()
    plain = nn.functional.conv1d(x0, conv.weight, conv.bias, padding=k // 2, groups=c)
    assert torch.allclose(out[True][0], plain, rtol=1e-5, atol=1e-6)
    for a, r in zip(out[True], out[False]):
        assert float((a - r).abs().max() / r.abs().max()) < 1e-5     # measured: <= 8e-7


def test_taken_in_the_module_only_where_it_applies(one_thread, monkeypatch):
    calls = []
    apply = cm._DepthwiseConv1dCPU.apply
    monkeypatch.setattr(cm._DepthwiseConv1dCPU, "apply", lambda *a: calls.append(1) or apply(*a))
    m = ConvolutionModule(16, 7).train()
    x = torch.randn(2, 9, 16, requires_grad=True)
    m(x).sum().backward()
    assert calls == [1]
    torch.set_num_threads(2)                            # torch's parallel convolution instead
    m(x).sum().backward()
    assert calls == [1]
    torch.set_num_threads(1)
    no_bias = nn.Conv1d(16, 16, 7, groups=16, padding=3, bias=False)
    y = cm.depthwise_conv_channels_last(no_bias, x.transpose(1, 2))
    assert calls == [1, 1] and torch.allclose(
        y, nn.functional.conv1d(x.transpose(1, 2), no_bias.weight, None, padding=3, groups=16), atol=1e-6)
    strided = nn.Conv1d(16, 16, 7, groups=16, padding=3, stride=2)
    assert not cm._c_loop_applies(strided, x.transpose(1, 2))


@pytest.mark.parametrize("c_loops", [False, True])
def test_conformer_convolution_time_major_path_matches_reference(c_loops, one_thread):
    """The Conformer's convolution module on the CPU layout path ((B, T, d) throughout,
    point-wise convolutions as matrix products, the depth-wise one as C loops or
    channels-last): output and every gradient within float rounding of the plain
    convolutions, padded frames included."""
    from variants import fast_paths
    from variants.components.conformer_convolution import ConformerConvolution

    torch.manual_seed(0)
    m = ConformerConvolution(24, 15).train()
    x0 = torch.randn(3, 20, 24)
    pad = torch.zeros(3, 20, dtype=torch.bool)
    pad[1, 12:] = True
    g = torch.randn(3, 20, 24)
    out = {}
    for mode in ("reference", "layout"):
        x = x0.clone().requires_grad_(True)
        m.zero_grad()
        with fast_paths.reference_paths(mode == "reference"), cpu_kernels.disabled(not c_loops):
            y = m(x, pad)
        y.backward(g)
        out[mode] = [y.detach(), x.grad] + [p.grad.clone() for p in m.parameters()]
    assert len(out["layout"]) == 2 + len(list(m.parameters()))
    for a, r in zip(out["layout"], out["reference"]):
        assert float((a - r).abs().max() / r.abs().max()) < 1e-5          # measured: <= 6e-7
