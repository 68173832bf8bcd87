"""Keep a parameter in a range through its gradient (the authors' limit_param_value).

Identity in the forward pass. In the backward pass, where the parameter is
below ``lo`` a gradient that would lower it further has its sign flipped, and
likewise above ``hi``; so the optimizer pushes it back into range without the
forward pass ever clamping it (train and eval compute the same function). It
acts on a random fraction ``prob`` of training steps (authors: 0.6).
"""
from __future__ import annotations

import random

import torch

from . import cpu_kernels


class _LimitParamValue(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, lo, hi):  # type: ignore[override]
        ctx.save_for_backward(x)
        ctx.lo, ctx.hi = lo, hi
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        (x,) = ctx.saved_tensors
        if (cpu_kernels.usable(x)
                and grad.dtype == torch.float32 and cpu_kernels.dense(x, grad)
                and isinstance(ctx.lo, float) and isinstance(ctx.hi, float)):
            # one C call (csrc/encoder.c) for the five small ops below; the same values
            out = torch.empty_like(grad)
            cpu_kernels.call("limit_param_grad", x, grad, out, x.numel(), ctx.lo, ctx.hi)
            return out, None, None
        # a gradient that would move x further below lo or above hi has its sign flipped
        # (one of the two cases at most, as lo <= hi)
        flip = ((grad > 0) & (x < ctx.lo)) | ((grad < 0) & (x > ctx.hi))
        return torch.where(flip, -grad, grad), None, None


def limit_param_value(x: torch.Tensor, lo: float, hi: float, prob: float = 0.6) -> torch.Tensor:
    """``x`` unchanged; on a fraction ``prob`` of calls its gradient keeps it in [lo, hi]."""
    if hi < lo:
        raise ValueError(f"limit_param_value: max {hi} < min {lo}")
    if random.random() < prob:
        return _LimitParamValue.apply(x, lo, hi)
    return x


class _LimitParamValueDrawn(torch.autograd.Function):
    """:class:`_LimitParamValue` with the step's draw and range as a float64 tensor
    ``decision`` = [act (0/1), lo, hi] (drawn before a compiled region: scheduled_float.py)."""

    @staticmethod
    def forward(ctx, x, decision):  # type: ignore[override]
        ctx.save_for_backward(x, decision)
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        x, d = ctx.saved_tensors
        act, lo, hi = d.unbind()
        flip = ((grad > 0) & (x < lo)) | ((grad < 0) & (x > hi))   # one of the two, never both
        return torch.where(flip & (act > 0), -grad, grad), None


def limit_param_value_drawn(x: torch.Tensor, decision: torch.Tensor) -> torch.Tensor:
    """:func:`limit_param_value` with its draw and range taken from ``decision``."""
    return _LimitParamValueDrawn.apply(x, decision)
