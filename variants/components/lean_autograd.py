"""Autograd functions that keep less for backward than the plain expressions.

Each computes its forward with the same operations, in the same order, as the
expression it replaces (so the outputs are bit-identical) and keeps only
tensors that other nodes keep anyway, recomputing a cheap elementwise
intermediate in the backward pass instead of keeping it:

- :func:`gate`: ``x * sigmoid(s)`` or ``x * tanh(s)`` keeps ``x`` and ``s``
  (usually two halves of one projection's output, kept by the projection's
  other uses) instead of also the sigmoid's / tanh's output (on the CPU fast
  paths, :func:`variants.fast_paths.cpu_layout`, it keeps that output instead of
  ``s``: no sigmoid / tanh pass in the backward);
- :func:`bypass_combine`: ``x + (y - x) * c`` keeps ``x``, ``y`` and ``c``
  instead of the difference ``y - x`` (``x`` and, in mid-block, ``y`` are kept
  by the next modules' input projections);
- :func:`recompute_enabled` / :func:`keep_hidden_layers`: the switch of the
  feed-forward and convolution modules' recomputed hidden layers;
- :func:`autocast_off` / :func:`cast`: what the Functions here and elsewhere use to
  compute in a given dtype without the cost of a no-op (an autocast context entered
  while autocast is off, a ``.to`` to the dtype a tensor has: a few microseconds each,
  ~85 contexts and ~500 conversions per training step of the demo's Zipformer);
- :func:`weighted_group_sum`: the gather-then-weighted-sum of Downsample keeps
  the un-gathered input instead of also its gathered copy, and its backward
  works on one group member at a time (temporaries of 1/k the input's size,
  not four of its size: it runs at the peak of training memory).

On one CPU thread (``cpu_kernels.usable``: float32, the channels last with one row
stride each, e.g. a channel slice) :func:`bypass_combine` and :func:`weighted_group_sum`
run their forward and backward as one C pass each (csrc/encoder.c), within float32
roundings of the torch ops rather than bit for bit. (The gate's C loops measured no faster than its few torch ops.)
"""
from __future__ import annotations

import contextlib
from typing import Iterator

import torch
from torch import nn

from .. import fast_paths
from . import cpu_kernels
from .balancer import Balancer, row_stride

_recompute = True


def recompute_enabled() -> bool:
    """Whether the feed-forward and convolution modules recompute their hidden layers in the
    backward pass (training off the CPU fast paths; on by default: memory over time)."""
    return _recompute


def recomputes_hidden(x: torch.Tensor, training: bool, balancer: nn.Module) -> bool:
    """Whether a feed-forward or convolution module's forward on ``x`` recomputes its hidden
    layer in the backward pass: training with gradients, off the CPU-only fast paths, with the
    switch on, and ``balancer`` (the hidden layer's) drawing its own decision in the forward.
    Not under ``torch.compile`` or with decisions drawn beforehand for it (``predrawn``): the
    compiled graphs keep what they need, and the recomputation's own draw would be a Python
    random number inside the traced code."""
    return (training and torch.is_grad_enabled() and recompute_enabled()
            and not fast_paths.cpu_layout(x) and not torch.compiler.is_compiling()
            and (isinstance(balancer, nn.Identity)
                 or (isinstance(balancer, Balancer) and not balancer.predrawn)))


@contextlib.contextmanager
def keep_hidden_layers(keep: bool = True) -> Iterator[None]:
    """Within the block the feed-forward and convolution modules keep their hidden layers for
    backward instead of recomputing them (``keep=False``: recompute): the same values, more
    memory, less time (Zipformer-M forward + backward, 2 x 10 s, CPU: recomputing took 1.18x)."""
    global _recompute
    old, _recompute = _recompute, not keep
    try:
        yield
    finally:
        _recompute = old


def autocast_off(device_type: str) -> contextlib.AbstractContextManager:
    """``torch.autocast(device_type, enabled=False)``, or no context when autocast is off."""
    if torch.is_autocast_enabled(device_type):
        return torch.autocast(device_type, enabled=False)
    return contextlib.nullcontext()


def cast(t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``t.to(dtype)`` (``t`` itself when it has that dtype, as ``.to`` returns it too)."""
    return t if t.dtype == dtype else t.to(dtype)


def _sum_to(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``t`` summed over the axes that ``like`` broadcast along, in ``like``'s dtype."""
    if t.shape != like.shape:
        t = t.sum_to_size(like.shape)
    return cast(t, like.dtype)


def _c_rows(*tensors: torch.Tensor) -> list[int] | None:
    """The row strides of the tensors (one shape, float32) seen as (frames, channels) rows
    of unit channel stride (``balancer.row_stride``), for the C loops (``cpu_kernels``), or
    None where those do not run."""
    first = tensors[0]
    if not (cpu_kernels.usable(first) and first.ndim >= 1 and first.numel() > 0):
        return None
    rows = []
    for t in tensors:
        ld = row_stride(t) if t.shape == first.shape and t.dtype == torch.float32 else None
        if ld is None:
            return None
        rows.append(ld)
    return rows


class _Gate(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, s, use_tanh):  # type: ignore[override]
        a = torch.tanh(s) if use_tanh else torch.sigmoid(s)
        # CPU fast path (as activation_dropout_linear's): the gate's value kept, not
        # recomputed in the backward pass (the same values; a tensor more memory)
        ctx.keep = fast_paths.cpu_layout(s)
        ctx.save_for_backward(x, a if ctx.keep else s)
        ctx.use_tanh = use_tanh
        return x * a

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        x, a = ctx.saved_tensors
        if not ctx.keep:                   # a is s
            a = torch.tanh(a) if ctx.use_tanh else torch.sigmoid(a)
        gx = gs = None
        if ctx.needs_input_grad[0]:
            gx = _sum_to(grad * a, x)
        if ctx.needs_input_grad[1]:
            # (in place on the new temporaries: the same values, three tensors fewer)
            da = torch.mul(a, a).neg_().add_(1.0) if ctx.use_tanh else torch.sub(1.0, a).mul_(a)
            gs = _sum_to((grad * x).mul_(da), a)        # (a has s's shape and dtype)
        return gx, gs, None


def gate(x: torch.Tensor, s: torch.Tensor, fn: str = "sigmoid") -> torch.Tensor:
    """``x * sigmoid(s)`` (``fn="sigmoid"``) or ``x * tanh(s)`` (``fn="tanh"``)."""
    if fn not in ("sigmoid", "tanh"):
        raise ValueError(f"gate fn must be 'sigmoid' or 'tanh', got {fn!r}")
    if torch.is_grad_enabled() and (x.requires_grad or s.requires_grad):
        return _Gate.apply(x, s, fn == "tanh")
    return x * (torch.tanh(s) if fn == "tanh" else torch.sigmoid(s))


def _bypass_scale(x: torch.Tensor, c: torch.Tensor) -> int | None:
    """For the C loops: 0 where ``c`` is (C,), 1 where it is (B, 1, C) of a (B, T, C) ``x``
    (contiguous float32 both), None otherwise."""
    if c.dtype != torch.float32 or not c.is_contiguous() or x.ndim != 3:
        return None
    if c.shape == (x.shape[2],):
        return 0
    return 1 if c.shape == (x.shape[0], 1, x.shape[2]) else None


class _BypassCombine(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, y, c):  # type: ignore[override]
        ctx.save_for_backward(x, y, c)
        rows = _c_rows(x, y)
        per_batch = None if rows is None else _bypass_scale(x, c)
        ctx.c_loop = per_batch is not None
        if per_batch is not None:
            # one C pass (csrc/encoder.c) instead of three, within float32 roundings
            ldx, ldy = rows
            out = torch.empty(x.shape)
            cpu_kernels.call("bypass_forward", x, ldx, y, ldy, c, out,
                             x.shape[0], x.shape[1], x.shape[2], per_batch)
            return out
        return x + (y - x) * c

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        x, y, c = ctx.saved_tensors
        gx = gy = gc = None
        need_x, need_y, need_c = ctx.needs_input_grad
        rows = _c_rows(grad, x, y) if ctx.c_loop else None
        if rows is not None:
            # one C pass: the two products and the scale's sums over frames (float64)
            ldg, ldx, ldy = rows
            gx = torch.empty(x.shape) if need_x else None
            gy = torch.empty(y.shape) if need_y else None
            gc = torch.empty(c.shape) if need_c else None
            cpu_kernels.call("bypass_backward", grad, ldg, x, ldx, y, ldy, c, gx, gy, gc,
                             x.shape[0], x.shape[1], x.shape[2], int(c.ndim == 3))
            return gx, gy, gc
        gyc = grad * c if (need_x or need_y) else None
        if need_x:
            gx = _sum_to(grad - gyc, x)
        if need_y:
            gy = _sum_to(gyc, y)
        if need_c:
            gc = _sum_to(grad * (y - x), c)
        return gx, gy, gc


def bypass_combine(x: torch.Tensor, y: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """``x + (y - x) * c``."""
    if torch.is_grad_enabled() and (x.requires_grad or y.requires_grad or c.requires_grad):
        return _BypassCombine.apply(x, y, c)
    d = y - x
    if d.dtype != torch.result_type(d, c) or d.shape != torch.broadcast_shapes(d.shape, c.shape):
        return x + d * c
    return d.mul_(c).add_(x)      # no gradient: in place, the same values (x + d == d + x)


def _group_sum_c(x: torch.Tensor, index: torch.Tensor, weights: torch.Tensor) -> bool:
    """Whether the C loops run :func:`weighted_group_sum` (one CPU thread, float32, ``x``
    (B, T, C) of unit channel stride, one index per frame for all channels: Downsample's)."""
    return (cpu_kernels.usable(x) and x.ndim == 3
            and x.numel() > 0 and x.stride(2) == 1
            and index.dtype == torch.int64 and index.stride(2) == 0
            and weights.dtype == torch.float32 and weights.is_contiguous())


class _WeightedGroupSum(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, index, weights, k):  # type: ignore[override]
        ctx.save_for_backward(x, index, weights)
        ctx.k = k
        ctx.c_loop = _group_sum_c(x, index, weights)
        if ctx.c_loop:
            # one C pass (csrc/encoder.c): no gathered copy; within float32 roundings
            b, t, c = x.shape
            y = torch.empty((b, index.shape[1] // k, c))
            cpu_kernels.call("group_sum_forward", x, x.stride(0), x.stride(1), index, index.stride(0),
                             index.stride(1), weights, y, b, y.shape[1], k, c)
            return y
        return _group_sum(torch.gather(x, 1, index), weights, k)

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        x, index, weights = ctx.saved_tensors
        k = ctx.k
        gx = gw = None
        if ctx.c_loop and cpu_kernels.usable(grad) and grad.is_contiguous():
            # one C call for the k gathers, k scatter-adds and the sums below (float64 sums)
            b, t, c = x.shape
            gx = torch.empty((b, t, c)) if ctx.needs_input_grad[0] else None
            gw = torch.empty(weights.shape) if ctx.needs_input_grad[2] else None
            cpu_kernels.call("group_sum_backward", grad, x, x.stride(0), x.stride(1), index,
                             index.stride(0), index.stride(1), weights, gx, gw, b, t, grad.shape[1], k, c)
            return gx, None, gw, None
        # one group member j (frames j, j + k, ...) at a time: temporaries of 1/k the input's size
        if ctx.needs_input_grad[2]:
            gw = torch.stack([(torch.gather(x, 1, index[:, j::k]) * grad).sum()
                              for j in range(k)]).reshape(weights.shape).to(weights.dtype)
        if ctx.needs_input_grad[0]:
            gx = torch.zeros_like(x)
            for j in range(k):
                gx.scatter_add_(1, index[:, j::k], (grad * weights[j]).to(x.dtype))
        return gx, None, gw, None


def _group_sum(xg: torch.Tensor, weights: torch.Tensor, k: int) -> torch.Tensor:
    b, n, c = xg.shape
    return (xg.reshape(b, n // k, k, c) * weights).sum(dim=2)


def weighted_group_sum(x: torch.Tensor, index: torch.Tensor, weights: torch.Tensor, k: int) -> torch.Tensor:
    """``(gather(x, 1, index).reshape(B, T', k, C) * weights).sum(2)``; ``weights`` is (k, 1)."""
    if torch.is_grad_enabled() and (x.requires_grad or weights.requires_grad):
        return _WeightedGroupSum.apply(x, index, weights, k)
    return _group_sum(torch.gather(x, 1, index), weights, k)

