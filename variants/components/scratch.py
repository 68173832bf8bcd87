"""Reusable CPU scratch buffers for temporaries of a backward pass.

On the CPU a freshly allocated tensor of several megabytes is usually fresh
memory from the operating system: glibc returns large freed blocks (mmap'd, or
trimmed from the top of the heap), so the first write to each 4 KiB page of the
next one faults (~1-3 ms for 9 MB, as much as several elementwise passes over
it; measured in Conv-Embed's backward, where a 2.2 M-element matrix product
took 5-6 ms with a fresh output and ~2 ms without). A temporary that never
leaves the function that makes it can instead live in a buffer kept between
steps: :func:`scratch` hands out a view of one, per name and thread, grown to
the largest size asked for (never shrunk: tens of megabytes held for the
process's life).

The caller must not return the view or keep it past the call, and must not
hand out the same name twice while the first view is in use.
"""
from __future__ import annotations

import threading

import torch

_local = threading.local()


def scratch(name: str, shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
    """A contiguous uninitialised tensor of ``shape`` with ``like``'s dtype and device,
    backed by the buffer ``name`` of this thread (see the module docstring)."""
    pool = getattr(_local, "pool", None)
    if pool is None:
        pool = _local.pool = {}
    numel = 1
    for s in shape:
        numel *= s
    key = (name, like.dtype, like.device)
    buf = pool.get(key)
    if buf is None or buf.numel() < numel:
        buf = pool[key] = torch.empty(max(numel, 1), dtype=like.dtype, device=like.device)
    return buf[:numel].view(shape)


def clear() -> None:
    """Free this thread's buffers."""
    _local.pool = {}
