"""Dropout: torch's (``Dropout``, ``dropout``: the same masks, drawn faster on the CPU)
and one whose mask is shared along time (the authors' Dropout3 on the time axis), with a
rate that may follow a ScheduledFloat."""
from __future__ import annotations

import functools
import math

import torch
from torch import nn

from . import cpu_kernels
from .scheduled_float import FloatLike, ScheduledFloat, rate_value

#: byte offset of ``normal_is_valid`` (int32) in the CPU generator's state
#: (seed, left, seeded, next, 624 state words, three doubles)
_NORMAL_VALID_AT = 8 + 4 + 4 + 8 + 624 * 8 + 3 * 8


class _DropoutCPU(torch.autograd.Function):
    """torch's dropout on the CPU, mask for mask: the default generator's Mersenne Twister
    drawn by the C loop of csrc/dropout.c (torch draws one element at a time; ~10 % of the
    Conformer row's training step), the generator's state read and written back, so the
    outputs, gradients and the random numbers drawn afterwards are torch's bits. Keeps a
    byte mask for the backward (torch keeps a float32 one)."""

    @staticmethod
    def forward(ctx, x, p, state):  # type: ignore[override]
        y, keep, scale = masked_loop("dropout_forward", x, p, state)
        ctx.save_for_backward(keep)
        ctx.scale = scale
        return y

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        (keep,) = ctx.saved_tensors
        if grad.dtype != torch.float32 or not (grad.is_contiguous() or cpu_kernels.dense(grad)):
            # torch's grad * noise, in the layout torch gives it (later sums add in its order)
            return grad * (keep.to(torch.float32) * ctx.scale), None, None
        if grad.stride() != keep.stride():
            keep = torch.empty_like(grad, dtype=torch.uint8).copy_(keep)  # grad's layout, as torch's
        gx = torch.empty_like(grad)
        cpu_kernels.call("dropout_backward", grad, keep, gx, grad.numel(), ctx.scale)
        return gx, None, None


@functools.lru_cache(maxsize=64)
def mask_constants(p: float) -> tuple[float, int]:
    """(scale, threshold) of the C loops' masks for dropout rate p: torch's noise.div_(1 - p)
    gives kept values 1 / (1 - p) rounded to float32; u < 1 - p with u = k / 2^53 is
    k < ceil((1 - p) 2^53)."""
    q = 1.0 - p
    return float(torch.ones((), dtype=torch.float32) / q), math.ceil(q * 2.0 ** 53)


def loop_state(x: torch.Tensor, p: float, training: bool) -> torch.Tensor | None:
    """The default generator's state (bytes) for a C loop to draw torch's dropout mask of
    ``x`` from (the loop writes it back; set it with ``torch.default_generator.set_state``),
    or None where torch's dropout must run: not training, p not in (0, 1), not a float32
    dense CPU tensor on the fast path (``cpu_kernels.usable``)."""
    if (training and 0.0 < p < 1.0 and x.numel() > 0 and cpu_kernels.usable(x)
            and (x.is_contiguous() or cpu_kernels.dense(x))):
        state = torch.default_generator.get_state()
        # a cached float64 normal sample would not survive get_state/set_state unchanged
        # (normal_is_valid is 0 or 1: its first byte says which)
        if state.numpy()[_NORMAL_VALID_AT] == 0:
            return state
    return None


def masked_loop(kernel: str, x: torch.Tensor, p: float, state: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Run the C loop ``kernel(state, x, y, keep, n, threshold, scale)`` that draws torch's
    dropout mask (rate p) of ``x`` from ``state`` (:func:`loop_state`) and writes y; the
    generator then continues from where the loop left it. Returns (y, byte mask, scale)."""
    scale, threshold = mask_constants(p)
    y = torch.empty_like(x)
    keep = torch.empty_like(x, dtype=torch.uint8)
    cpu_kernels.call(kernel, state, x, y, keep, x.numel(), threshold, scale)
    torch.default_generator.set_state(state)
    return y, keep, scale


def dropout(x: torch.Tensor, p: float, training: bool = True) -> torch.Tensor:
    """``torch.nn.functional.dropout(x, p, training)``, the same values and masks; float32
    tensors on the CPU fast path (one thread) draw their masks in a C loop (_DropoutCPU)."""
    state = loop_state(x, p, training)
    if state is not None:
        return _DropoutCPU.apply(x, float(p), state)
    return nn.functional.dropout(x, p, training)


class Dropout(nn.Dropout):
    """``torch.nn.Dropout`` through :func:`dropout` (the same masks and values)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.inplace:
            return super().forward(x)
        return dropout(x, self.p, self.training)


class TimeSharedDropout(nn.Module):
    """x (B, T, C): one mask of shape (B, 1, C) per batch, scaled by 1/(1-p)."""

    #: a scheduled rate read from its drawn tensor (see scheduled_float.py)
    predrawn = False

    def __init__(self, p: FloatLike):
        super().__init__()
        self.p = p

    def mask(self, x: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor | None:
        """The scaled (B, 1, C) mask (in ``dtype``, default x's) for ``x``; None for the identity."""
        if self.predrawn and self.training and isinstance(self.p, ScheduledFloat):
            pt = rate_value(self.p, True)      # drawn each step: a mask even where the rate is 0
            keep = torch.rand(x.shape[0], 1, x.shape[-1], device=x.device) > pt
            return keep.to(dtype or x.dtype) * (1.0 / (1.0 - pt)).to(dtype or x.dtype)
        p = float(self.p)
        if not self.training or p == 0.0:
            return None
        keep = torch.rand(x.shape[0], 1, x.shape[-1], device=x.device) > p
        return keep.to(dtype or x.dtype) * (1.0 / (1.0 - p))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mask = self.mask(x)
        return x if mask is None else x * mask
