"""The mutual-information recursion as two Triton kernels: one launch per direction.

Same recursion, arguments and results as
:func:`harness.losses.mutual_information.mutual_information_recursion`
(see there for the math); only the schedule differs. The PyTorch version runs
``S + T`` small steps over the whole batch, each a few kernel launches, so on
a GPU it is bound by launches. Here each utterance is one Triton program that
walks its own anti-diagonals ``d = 1 .. S_b + T_b`` inside the kernel:

- forward: on diagonal ``d`` the cells ``(s, d - s)`` inside the utterance's
  box ``[0, S_b] x [0, T_b]`` are computed in ``BLOCK`` lanes at a time from the
  previous diagonal, which the same program wrote to the score table ``p``
  (B, S+1, T+1) one step earlier; a block barrier separates the diagonals.
  Cells outside the box are never visited, so ragged lengths cost nothing and
  arcs leaving the box are ignored without masking the inputs.
- backward: the diagonals in reverse. A cell's occupation ``g`` (the
  derivative of the score with respect to ``p[s, t]``; at the end cell the
  incoming gradient) is the sum of the occupations of its two outgoing arcs,
  written one step earlier; it is split between its incoming label arc
  (weight ``exp(p[s-1, t] + px[s-1, t] - p[s, t])``) and blank arc (the rest).
  Every arc is written by exactly one cell, so there are no write conflicts.
  The result is the arc occupation posteriors that pruning needs.

Accumulation is in the input dtype: float32, or float64 (Triton's exp/log
support both). Documented conversions: float16/bfloat16 inputs are upcast to
float32 (the gradients flow back through the cast in the input dtype) and
non-contiguous inputs are made contiguous. On CPU tensors the kernels run
only under Triton's interpreter (``TRITON_INTERPRET=1`` set before this
module is first imported); otherwise a clear error is raised. CUDA tensors
always get the compiled kernels, also in a process whose module-level kernels
are the interpreted ones (a CPU test imported it first): :func:`kernels_for`
builds the other kind once, from this same file loaded as a second module.

This module imports Triton at import time; the rest of the project imports it
only when the Triton backend is chosen (:mod:`harness.losses.rnnt_backend`).
"""
from __future__ import annotations

import contextlib
import importlib.util
import os
import sys
import threading
from types import ModuleType
from typing import Any

import numpy
import torch
import triton
import triton.language as tl
from torch import Tensor
from triton.runtime.interpreter import InterpretedFunction

from .mutual_information import checked_inputs, run_lattice

#: widest block of symbol positions one program handles per step; longer diagonals loop over blocks
MAX_BLOCK = 256


@triton.jit
def _logaddexp(a, c):
    m = tl.maximum(a, c)
    m = tl.where(m == float("-inf"), 0.0, m)  # both -inf: log(0 + 0) = -inf, not NaN
    return m + tl.log(tl.exp(a - m) + tl.exp(c - m))


@triton.jit
def _utterance(ends_ptr, S, T):
    """This program's utterance b, its (S_b, T_b), and where it starts in (B, S, T+1),
    (B, S+1, T) and (B, S+1, T+1) tensors."""
    b = tl.program_id(0).to(tl.int64)
    return (b, tl.load(ends_ptr + 2 * b), tl.load(ends_ptr + 2 * b + 1),
            b * S * (T + 1), b * (S + 1) * T, b * (S + 1) * (T + 1))


@triton.jit
def _cells(d, s0, s_end, t_end, BLOCK: tl.constexpr):
    """Cells (s, d - s), s = s0 .. s0 + BLOCK - 1, of anti-diagonal d: s, t, inside the box,
    has an incoming label arc (s-1, t) -> (s, t), has an incoming blank arc (s, t-1) -> (s, t)."""
    s = s0 + tl.arange(0, BLOCK)
    t = d - s
    cell = (s <= tl.minimum(d, s_end)) & (t <= t_end)
    return s, t, cell, cell & (s > 0), cell & (t > 0)


@triton.jit(do_not_specialize=["S", "T"])  # one compiled kernel for every S and T
def _mi_forward_kernel(px_ptr, py_ptr, ends_ptr, p_ptr, score_ptr, S, T, BLOCK: tl.constexpr):
    """p[s, t] for every cell of utterance ``program_id`` inside its box, and p[S_b, T_b]."""
    b, s_end, t_end, x_off, y_off, p_off = _utterance(ends_ptr, S, T)
    px_b, py_b, p_b = px_ptr + x_off, py_ptr + y_off, p_ptr + p_off
    tl.store(p_b, 0.0)
    tl.debug_barrier()
    for d in range(1, s_end + t_end + 1):
        for s0 in range(tl.maximum(d - t_end, 0), tl.minimum(d, s_end) + 1, BLOCK):
            s, t, cell, below, left = _cells(d, s0, s_end, t_end, BLOCK)
            # ".cg": read p through L2, where the other lanes' stores of the last step are
            a = (tl.load(p_b + (s - 1) * (T + 1) + t, mask=below, other=float("-inf"), cache_modifier=".cg")
                 + tl.load(px_b + (s - 1) * (T + 1) + t, mask=below, other=float("-inf")))
            c = (tl.load(p_b + s * (T + 1) + t - 1, mask=left, other=float("-inf"), cache_modifier=".cg")
                 + tl.load(py_b + s * T + t - 1, mask=left, other=float("-inf")))
            tl.store(p_b + s * (T + 1) + t, _logaddexp(a, c), mask=cell)
        tl.debug_barrier()
    tl.store(score_ptr + b, tl.load(p_b + s_end * (T + 1) + t_end, cache_modifier=".cg"))


@triton.jit(do_not_specialize=["S", "T"])
def _mi_backward_kernel(px_ptr, ends_ptr, p_ptr, grad_ptr, gx_ptr, gy_ptr, S, T,
                        BLOCK: tl.constexpr):
    """Arc occupations times grad[b]: gx (B, S, T+1) and gy (B, S+1, T), zero outside the box."""
    b, s_end, t_end, x_off, y_off, p_off = _utterance(ends_ptr, S, T)
    px_b, p_b, gx_b, gy_b = px_ptr + x_off, p_ptr + p_off, gx_ptr + x_off, gy_ptr + y_off
    g_end = tl.load(grad_ptr + b)
    for i in range(0, s_end + t_end):
        d = s_end + t_end - i
        for s0 in range(tl.maximum(d - t_end, 0), tl.minimum(d, s_end) + 1, BLOCK):
            s, t, cell, below, left = _cells(d, s0, s_end, t_end, BLOCK)
            # occupation of (s, t): its outgoing arcs (written one step earlier), or the end cell's grad
            g = (tl.load(gx_b + s * (T + 1) + t, mask=cell & (s < s_end), other=0.0, cache_modifier=".cg")
                 + tl.load(gy_b + s * T + t, mask=cell & (t < t_end), other=0.0, cache_modifier=".cg"))
            g = tl.where(cell & (s == s_end) & (t == t_end), g_end, g)
            p_cell = tl.load(p_b + s * (T + 1) + t, mask=cell, other=float("-inf"))
            reachable = p_cell != float("-inf")
            p_cell = tl.where(reachable, p_cell, 0.0)
            a = (tl.load(p_b + (s - 1) * (T + 1) + t, mask=below, other=float("-inf"))
                 + tl.load(px_b + (s - 1) * (T + 1) + t, mask=below, other=float("-inf")))
            w = tl.where(reachable, tl.exp(a - p_cell), 0.0)  # share of the label arc
            gx = w * g
            tl.store(gx_b + (s - 1) * (T + 1) + t, gx, mask=below)
            tl.store(gy_b + s * T + t - 1, tl.where(reachable, g - gx, 0.0), mask=left)
        tl.debug_barrier()


def _block(S: int, T: int) -> int:
    """Lanes per step: a diagonal holds at most min(S, T) + 1 cells; at least one warp's 32, so
    a training run compiles at most four block sizes."""
    return min(max(triton.next_power_of_2(min(S, T) + 1), 32), MAX_BLOCK)


def interpreted() -> bool:
    """Whether the kernels run in Triton's interpreter (TRITON_INTERPRET=1 at import): CPU tensors."""
    return isinstance(_mi_forward_kernel, InterpretedFunction)


#: the kernels of the other kind than this module's (interpret flag -> module), built on demand
_TWINS: dict[bool, ModuleType] = {}
_TWIN_LOCK = threading.Lock()


def _twin(interpret: bool) -> ModuleType:
    """This file executed again as a second module with ``TRITON_INTERPRET`` set for the kind
    wanted, so its kernels and the helpers they call (found in their module's globals) are all
    compiled (``interpret=False``) or all interpreted."""
    with _TWIN_LOCK:
        if interpret not in _TWINS:
            name = f"{__name__}_{'interpreted' if interpret else 'compiled'}"
            spec = importlib.util.spec_from_file_location(name, __file__)
            assert spec is not None and spec.loader is not None
            module = importlib.util.module_from_spec(spec)
            old = os.environ.get("TRITON_INTERPRET")
            os.environ["TRITON_INTERPRET"] = "1" if interpret else "0"  # read by @triton.jit
            try:
                sys.modules[name] = module
                spec.loader.exec_module(module)
            finally:
                if old is None:
                    os.environ.pop("TRITON_INTERPRET", None)
                else:
                    os.environ["TRITON_INTERPRET"] = old
            _TWINS[interpret] = module
        return _TWINS[interpret]


def kernel_set(interpret: bool) -> tuple[Any, Any]:
    """(forward, backward) kernels run by Triton's interpreter (``interpret``) or compiled."""
    if interpreted() == interpret:
        return _mi_forward_kernel, _mi_backward_kernel
    twin = _twin(interpret)
    return twin._mi_forward_kernel, twin._mi_backward_kernel


def kernels_for(device: torch.device) -> tuple[Any, Any]:
    """The kernels for tensors on ``device``: compiled on CUDA (whatever this module's own
    kernels are), this module's interpreted ones elsewhere (:func:`_check_runnable`)."""
    return kernel_set(device.type != "cuda")


def _launch(kernel, B: int, *args, S: int, T: int) -> None:
    """kernel[(B,)](*args, S, T), one warp per 32 lanes (at most 4); the interpreter's NumPy
    warnings for log(0) = -inf are expected."""
    if not B:
        return
    with numpy.errstate(divide="ignore", invalid="ignore") if isinstance(kernel, InterpretedFunction) \
            else contextlib.nullcontext():
        block = _block(S, T)
        kernel[(B,)](*args, S, T, BLOCK=block, num_warps=max(1, min(4, block // 32)), enable_fp_fusion=True)


def _check_runnable(px: Tensor) -> None:
    if px.device.type != "cuda" and not interpreted():
        raise RuntimeError(
            f"the Triton mutual-information kernels need CUDA tensors, got {px.device.type}; on a CPU "
            "set TRITON_INTERPRET=1 before harness.losses.mutual_information_triton is imported, "
            "or use rnnt_backend='torch'")


def _triton_lattice(px: Tensor, py: Tensor, ends: Tensor,
                    want_grad: bool) -> tuple[Tensor, Tensor | None, Tensor | None]:
    B, S, T1 = px.shape
    forward, backward = kernels_for(px.device)
    p = torch.empty(B, S + 1, T1, dtype=px.dtype, device=px.device)
    scores = px.new_empty(B)
    _launch(forward, B, px, py, ends, p, scores, S=S, T=T1 - 1)
    if not want_grad:
        return scores, None, None
    gx, gy = torch.zeros_like(px), torch.zeros_like(py)
    _launch(backward, B, px, ends, p, torch.ones_like(scores), gx, gy, S=S, T=T1 - 1)
    return scores, gx, gy


def mutual_information_recursion_triton(
    px: Tensor, py: Tensor, boundary: Tensor | None = None, return_grad: bool = False,
) -> Tensor | tuple[Tensor, tuple[Tensor, Tensor]]:
    """Total log-score ``p[S_b, T_b]`` of each utterance, shape (B,), computed by the Triton kernels.

    Arguments, results and errors as
    :func:`~harness.losses.mutual_information.mutual_information_recursion`.
    As there, float16/bfloat16 inputs are computed in float32; non-contiguous
    inputs are copied to contiguous ones.
    """
    px, py, ends = checked_inputs(px, py, boundary)
    _check_runnable(px)
    return run_lattice(_triton_lattice, px.contiguous(), py.contiguous(), ends.contiguous(), return_grad)
