"""Activation -> time-shared dropout -> Linear, keeping only the activation's input.

The tail of the feed-forward module (SwooshL, dropout, Linear) and of the
convolution module (SwooshR, Linear). Plain autograd keeps two hidden-sized
tensors for it: what the activation needs (``x - offset``, float32 under CUDA
autocast) and the Linear's input. This function keeps ``x`` alone (which the
hidden Balancer, when active, keeps anyway) and the (B, 1, C) dropout mask, and
recomputes the activation in the backward pass, as the authors'
``ActivationDropoutAndLinear`` does. The forward values are those of
``linear(dropout(activation(x)))``: the activation in float32, the Linear in
autocast's dtype when autocast is on.

On CPU (``variants.fast_paths.cpu_layout``) it keeps instead the activation's
output and derivative, computed once in the forward pass: no recomputation, for
a second hidden-sized tensor (the CPU proxy of GPU memory,
``fast_paths.device_independent()``, keeps ``x`` alone).
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from .. import fast_paths
from .lean_autograd import autocast_off, cast

Fn = Callable[[torch.Tensor], torch.Tensor]


def _compute_dtype(x: torch.Tensor) -> torch.dtype:
    t = x.device.type
    return torch.get_autocast_dtype(t) if torch.is_autocast_enabled(t) else x.dtype


class _ActivationDropoutLinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, fn, fn_and_deriv, mask):  # type: ignore[override]
        dtype = _compute_dtype(x)
        # CPU fast path: the activation and its derivative computed once, here, and kept
        # (two hidden-sized float tensors instead of x): no recomputation in the backward
        # pass, where step time matters more than memory (as the CPU layout paths of
        # Conv-Embed and ConvNeXt); the same values as the recomputation
        keep = fast_paths.cpu_layout(x)
        with autocast_off(x.device.type):
            if keep:
                # (both masked, so the backward pass has nothing left to mask; on one CPU
                # thread the activation, its derivative and the mask are one C pass)
                y, d = fn_and_deriv(x.float(), mask)
            else:
                y, d = fn(x.float()), None
                if mask is not None:
                    y = y * mask
            out = F.linear(cast(y, dtype), cast(weight, dtype), None if bias is None else cast(bias, dtype))
        if keep:
            ctx.save_for_backward(y, weight, mask, d)
        else:
            ctx.save_for_backward(x, weight, mask)
        ctx.keep, ctx.x_dtype = keep, x.dtype
        ctx.fn_and_deriv, ctx.dtype, ctx.has_bias = fn_and_deriv, dtype, bias is not None
        return out

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        if ctx.keep:                                # y and d masked in the forward pass
            y, weight, mask, d = ctx.saved_tensors
        else:
            x, weight, mask = ctx.saved_tensors
        dtype = ctx.dtype
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        grad_x = grad_w = grad_b = None
        with autocast_off(grad.device.type):
            if not ctx.keep:
                y, d = ctx.fn_and_deriv(x.float())
            g = cast(grad, dtype)
            g2 = g.reshape(-1, g.shape[-1])
            if need_w:
                y = y if mask is None or ctx.keep else y * mask
                grad_w = cast(torch.mm(g2.t(), cast(y, dtype).reshape(-1, y.shape[-1])), weight.dtype)
            if need_b and ctx.has_bias:
                grad_b = cast(g2.sum(dim=0), weight.dtype)
            if need_x:
                # (g2 @ w is what g @ w computes for a 3-d g: one matrix product)
                gx = torch.mm(g2, cast(weight, dtype)).view(*g.shape[:-1], weight.shape[-1])
                if ctx.keep:                        # d is masked already; g @ w is new
                    grad_x = cast(gx.float().mul_(d), ctx.x_dtype)
                else:
                    d = d if mask is None else d * mask
                    grad_x = cast(gx.float() * d, ctx.x_dtype)
        return grad_x, grad_w, grad_b, None, None, None


def activation_dropout_linear(x: torch.Tensor, activation: torch.nn.Module, linear: torch.nn.Linear,
                              mask: torch.Tensor | None = None) -> torch.Tensor:
    """``linear(activation(x) * mask)``; memory-lean when a gradient is needed.

    ``activation`` is one of :mod:`.swoosh`'s modules (it has ``fn`` and
    ``fn_and_deriv(x, mask)``); ``mask`` is the scaled dropout mask broadcasting against ``x``,
    or None.
    """
    # compiled (torch.compile): the plain ops, which inductor fuses and keeps lean itself
    if torch.compiler.is_compiling() or not (torch.is_grad_enabled()
                                             and (x.requires_grad or linear.weight.requires_grad)):
        y = activation(x)
        y = y if mask is None else y * mask
        if y.dim() == 3 and not y.is_contiguous() and linear.bias is not None:
            # a transposed layout (the convolution module's (B, D, T) output seen as (B, T, D)):
            # a batched product reads it as is, where linear would copy it and add the bias apart
            return torch.baddbmm(linear.bias, y, linear.weight.t().expand(y.shape[0], -1, -1))
        return linear(y)
    return _ActivationDropoutLinear.apply(x, linear.weight, linear.bias, activation.fn,
                                          activation.fn_and_deriv, mask)
