"""Convolution module of the Zipformer block: Linear to 2D -> gating
x * sigmoid(s) -> depth-wise Conv1d over time -> activation (SwooshR) ->
Linear. Padded frames are zeroed before the depth-wise convolution, so they
never leak into valid frames.

In training (off the CPU-only fast paths, see :mod:`variants.fast_paths`) the
part up to the depth-wise convolution keeps nothing of its own for the
backward pass: the projection, gate and zeroed frames are recomputed from
the input, which the residual stream keeps anyway (the first Balancer's
random draw is made once, before, so the recomputation repeats it)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from .. import fast_paths
from . import cpu_kernels
from .activation import create_activation
from .activation_dropout_linear import activation_dropout_linear
from .attention_weights import is_tracing, whitening_limit_schedule
from .balancer import Balancer, apply_balancer, make_balancer
from .lean_autograd import gate, recomputes_hidden
from .scaled_linear import scaled_linear
from .scheduled_float import ScheduledFloat
from .whitener import make_whitener


class ConvolutionModule(nn.Module):
    """x (B, T, D), padding mask (B, T) True at padding -> (B, T, D)."""

    def __init__(self, channels: int, kernel_size: int, *, activation: str = "swoosh",
                 balancer: bool = True, whitener: bool = True, causal: bool = False):
        super().__init__()
        if causal:
            raise NotImplementedError("causal (chunked) convolution is not supported; "
                                      "use causal=False")
        if kernel_size % 2 == 0 or kernel_size < 1:
            raise ValueError(f"ConvolutionModule kernel_size must be odd, got {kernel_size}")
        self.in_proj = nn.Linear(channels, 2 * channels)
        self.balancer1 = make_balancer(
            channels, enabled=balancer, channel_dim=-1,
            min_positive=ScheduledFloat((0.0, 0.05), (8000.0, 0.025)), max_positive=1.0,
            min_abs=1.5, max_abs=ScheduledFloat((0.0, 5.0), (8000.0, 10.0), default=1.0))
        self.depthwise_conv = nn.Conv1d(channels, channels, kernel_size, groups=channels,
                                        padding=kernel_size // 2)
        self.balancer2 = make_balancer(
            channels, enabled=balancer, channel_dim=1,
            min_positive=ScheduledFloat((0.0, 0.1), (8000.0, 0.05)), max_positive=1.0,
            min_abs=ScheduledFloat((0.0, 0.2), (20000.0, 0.5)), max_abs=10.0)
        self.whiten = make_whitener(enabled=whitener, num_groups=1,
                                    whitening_limit=whitening_limit_schedule(7.5),
                                    prob=(0.025, 0.25), grad_scale=0.01)
        self.activation = create_activation(activation, "convolution")
        self.out_proj = scaled_linear(channels, channels, bias=True, initial_scale=0.05)

    def forward(self, x: torch.Tensor, padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        if recomputes_hidden(x, self.training, self.balancer1):
            balance = (self.balancer1.draw((*x.shape[:-1], self.depthwise_conv.in_channels), True)
                       if isinstance(self.balancer1, Balancer) else None)
            x = checkpoint(self._gated_conv, x, padding_mask, balance,
                           use_reentrant=False, preserve_rng_state=False)
        else:
            x = self._gated_conv(x, padding_mask)
        x = self.balancer2(x)                                    # (B, D, T)
        x = self.whiten(x.transpose(1, 2))
        return activation_dropout_linear(x, self.activation, self.out_proj)

    def _gated_conv(self, x: torch.Tensor, padding_mask: torch.Tensor | None,
                    balance: tuple | None | bool = False) -> torch.Tensor:
        """in_proj -> gate (first Balancer: ``balance`` drawn already, or False: the module
        draws) -> zeroed padding -> depth-wise convolution; (B, T, D) -> (B, D, T)."""
        x, s = self.in_proj(x).chunk(2, dim=-1)
        if balance is False:
            s = self.balancer1(s)
        elif balance is not None:
            s = apply_balancer(s, balance)
        if fast_paths.enabled() and not (torch.is_grad_enabled() and x.requires_grad) and not is_tracing():
            # no gradient (eval): the projection's output is new; the sigmoid in place and
            # the product written straight into the (B, D, T) layout the convolution reads
            # (exporters: the plain ops below, they have no out= variants)
            b, t, d = x.shape
            y = torch.empty(b, d, t, dtype=x.dtype, device=x.device)
            torch.mul(x, s.sigmoid_(), out=y.transpose(1, 2))
            if padding_mask is not None:
                y.masked_fill_(padding_mask.unsqueeze(1), 0.0)
            return self.depthwise_conv(y)
        x = gate(x, s, "sigmoid")   # keeps no sigmoid output for backward
        if padding_mask is not None:
            x = x.masked_fill(padding_mask.unsqueeze(-1), 0.0)
        x = x.transpose(1, 2)
        if fast_paths.cpu_layout(x):
            return depthwise_conv_channels_last(self.depthwise_conv, x)
        return self.depthwise_conv(x)


class _DepthwiseConv1dCPU(torch.autograd.Function):
    """The depth-wise convolution over time as C loops (csrc/depthwise_conv.c) on x held
    as (B, T, C) in memory: every inner loop runs over the contiguous channels (mkldnn
    took ~0.5 ms for the backward of one 5 x 116 x 64 batch, kernel 15). Returns (B, C, T)
    held the same way. Within float32 roundings of the convolution (sums in another order)."""

    @staticmethod
    def forward(ctx, x, weight, bias):  # type: ignore[override]
        b, c, t = x.shape
        k = weight.shape[-1]
        wt = weight.detach().reshape(c, k).t().contiguous()             # (K, C)
        y = torch.empty(b, t, c, dtype=x.dtype)
        cpu_kernels.call("depthwise_conv1d_forward", x, wt, bias, y, b, t, c, k)
        ctx.save_for_backward(x, wt)
        ctx.has_bias = bias is not None
        return y.transpose(1, 2)

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        x, wt = ctx.saved_tensors
        b, c, t = x.shape
        k = wt.shape[0]
        g = grad.transpose(1, 2).contiguous()                            # (B, T, C)
        gx = torch.empty(b, t, c, dtype=x.dtype) if ctx.needs_input_grad[0] else None
        gwt = torch.empty(k, c, dtype=x.dtype)
        gb = torch.empty(c, dtype=x.dtype) if ctx.has_bias else None
        cpu_kernels.call("depthwise_conv1d_backward", x, wt, g, gx, gwt, gb, b, t, c, k)
        gw = gwt.t().reshape(c, 1, k) if ctx.needs_input_grad[1] else None
        return (gx.transpose(1, 2) if gx is not None else None), gw, gb


def _c_loop_applies(conv: nn.Conv1d, x: torch.Tensor) -> bool:
    return (cpu_kernels.usable(x) and x.ndim == 3 and x.transpose(1, 2).is_contiguous()
            and conv.weight.dtype == torch.float32 and conv.stride == (1,) and conv.dilation == (1,)
            and conv.padding == ((conv.kernel_size[0] - 1) // 2,) and conv.kernel_size[0] % 2 == 1
            and conv.groups == conv.in_channels == conv.out_channels and conv.padding_mode == "zeros")


def depthwise_conv_channels_last(conv: nn.Conv1d, x: torch.Tensor) -> torch.Tensor:
    """``conv(x)`` for ``x`` (B, C, T) held channels-last ((B, T, C) in memory), as a 2-d
    convolution over (B, C, 1, T), which the CPU runs in that layout: forward + backward
    took half the time of the 1-d convolution (5 x 96 x 66, kernel 15, one thread: 0.53
    vs 1.09 ms). The output is channels-last too (its transpose, read next, is contiguous).
    The same values within float rounding (sums in another order; a CPU-only layout
    path, see :mod:`variants.fast_paths`)."""
    if _c_loop_applies(conv, x):
        return _DepthwiseConv1dCPU.apply(x, conv.weight, conv.bias)
    y = F.conv2d(x.unsqueeze(2), conv.weight.unsqueeze(2), conv.bias, stride=(1, conv.stride[0]),
                 padding=(0, conv.padding[0]), dilation=(1, conv.dilation[0]), groups=conv.groups)
    return y.squeeze(2)
