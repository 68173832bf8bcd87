"""A switch between the fused (fast) and the reference arithmetic of a few hot spots.

The fused paths compute the same quantities as the reference ones (within
float rounding; tests compare the two): the Balancer's backward from
per-channel statistics in closed form, ConvNeXt's point-wise convolutions as
matrix products, and its depth-wise convolution in channels-last layout;
ScaledAdam's per-tensor sums ``sum(grad * param)`` as dot products (not
``(1, n) x (n, 1)`` matrix products, ~5x slower on the CPU) and, on the CPU,
its per-tensor scalars (step counts, scale moments) as views of one vector each,
and each tensor's update as one call of torch's fused AdamW kernel (CPU, float32/64);
Swoosh's softplus as exp and log on large CPU tensors; the Whitener's CPU backward
reading x and its gradient as (frames, channels) in memory order.
They are on by default; ``reference_paths()`` turns them off for a block (the
speed benchmark and the equality tests run both in one process).

The CPU-only layout paths (channels-last Conv-Embed and ConvNeXt, each as a few fused
autograd Functions: ConvNeXt's branch with its layer drop and residual, each
Conv2d -> Balancer -> SwooshR stage; the convolution module's depth-wise convolution as a
channels-last 2-d one; Swoosh and activation_dropout_linear keeping float32 derivatives
instead of a byte or a recomputation; these may read values back, free on the CPU)
take the place of the memory-lean paths on CPU, where step time
matters more than memory; ``device_independent()`` turns off only those, so a CPU measurement
runs what a GPU runs (the CPU proxy of GPU training memory); inside regions torch.compile
traces (train.compile) they are off too (:func:`cpu_layout`).

Under the CPU layout paths, with torch on one thread, some of their arithmetic runs as C loops
(``components/cpu_kernels.py``, ``components/csrc/``: Swoosh's value and derivative level in one
pass, and its exact derivative with the dropout mask; the Balancer's extra gradient from float64
per-channel sums in one call at any size; the Whitener's centring, metric, decision and gradient
around torch's two matrix products; BiasNorm, Bypass, Downsample's weighted group sum and
``limit_param_value``'s backward; Conv-Embed's Conv2d -> Balancer -> SwooshR stages and ConvNeXt's
hidden layer, layer drop, residual and 7x7 depth-wise convolution; the convolution modules'
depth-wise convolution over (B, T, C) memory; ScaledAdam's statistics and update of a bucket in
two calls), within float32 roundings of the torch operators they replace;
``cpu_kernels.disabled()`` turns off only those. The Conformer's convolution module holds its
activations (B, T, d) on this path (point-wise convolutions as matrix products).
"""
from __future__ import annotations

import contextlib
from typing import Iterator

import torch

_enabled = True
_cpu_layouts = True


def enabled() -> bool:
    """Whether the fused paths are in use."""
    return _enabled


@contextlib.contextmanager
def reference_paths(reference: bool = True) -> Iterator[None]:
    """Within the block use the reference arithmetic (``reference=False``: the fused paths)."""
    global _enabled
    old, _enabled = _enabled, not reference
    try:
        yield
    finally:
        _enabled = old


def cpu_layout(x: torch.Tensor) -> bool:
    """Whether the CPU-only layout paths apply to ``x``: fused paths on, ``x`` on the CPU,
    not turned off by :func:`device_independent`, and no tracing: neither an exporter
    (``torch.jit.trace``, ``torch.export``) nor ``torch.compile`` (train.compile's layers),
    whose regions take the plain ops, those a GPU runs: inductor picks the layouts and what
    to keep itself, and a layout chosen here can be one it cannot lower under dynamic shapes
    (the depth-wise convolution's channels-last 2-d view in a downsampled stack has a stride
    in ``ceil(T / 2)`` that it cannot order against the channels' count)."""
    return (_enabled and _cpu_layouts and x.device.type == "cpu"
            and not torch.jit.is_tracing() and not torch.compiler.is_compiling())


@contextlib.contextmanager
def device_independent() -> Iterator[None]:
    """Within the block the CPU-only layout paths are off: the arithmetic a GPU runs."""
    global _cpu_layouts
    old, _cpu_layouts = _cpu_layouts, False
    try:
        yield
    finally:
        _cpu_layouts = old
