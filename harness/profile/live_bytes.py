"""A device-free proxy for peak training memory: the peak of live tensor bytes.

:class:`LiveBytes` is a ``TorchDispatchMode``: every op that runs under it
(forward, and backward, which runs with the same mode) has its outputs looked
at; a storage that is new (not an input's, not already counted, and not a view
or in-place result by the op's schema) adds its ``nbytes`` to the live total,
and a ``weakref.finalize`` on the untyped storage takes them off when the
storage is freed. ``peak`` is the largest live total since entering (or since
:meth:`LiveBytes.reset_peak`). Storages that existed before entering (weights,
the input) are not counted, so the peak is what a step allocates on top of
them: activations, saved tensors, autocast's casts, gradients.

What it misses: allocations inside a kernel that never become a tensor
(workspaces) and the caching allocator's rounding and fragmentation, so it
tracks ``torch.cuda.max_memory_allocated`` minus the memory before the step,
not equals it. It is the same count for any two implementations measured with
it, which is what a ratio needs.
"""
from __future__ import annotations

import weakref
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves


def _aliases_input(func) -> bool:
    """Whether the op's schema says an output is a view of, or written into, an input."""
    schema = getattr(func, "_schema", None)
    return schema is not None and any(r.alias_info is not None for r in schema.returns)


class LiveBytes(TorchDispatchMode):
    """Within: ``current`` live bytes of storages allocated by ops, ``peak`` their maximum."""

    def __init__(self) -> None:
        super().__init__()
        self.current = 0
        self.peak = 0
        self.allocations = 0
        self._live: dict[int, int] = {}

    def reset_peak(self) -> None:
        self.peak = self.current

    def _free(self, key: int) -> None:
        self.current -= self._live.pop(key, 0)

    def _track(self, t: torch.Tensor, inputs: set[int]) -> None:
        if t.is_sparse or t.device.type == "meta":
            return
        s = t.untyped_storage()
        key = id(s)
        if key in self._live or key in inputs:
            return
        n = s.nbytes()
        self._live[key] = n
        self.current += n
        self.allocations += 1
        self.peak = max(self.peak, self.current)
        weakref.finalize(s, self._free, key)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None) -> Any:
        out = func(*args, **(kwargs or {}))
        if _aliases_input(func):
            return out
        inputs = {id(a.untyped_storage()) for a in tree_leaves((args, kwargs))
                  if isinstance(a, torch.Tensor) and not a.is_sparse and a.device.type != "meta"}
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor):
                self._track(t, inputs)
        return out


def peak_live_bytes(fn) -> tuple[Any, int]:
    """Run ``fn()`` (e.g. a forward + backward) under :class:`LiveBytes`; its result and peak bytes."""
    with LiveBytes() as counter:
        out = fn()
    return out, counter.peak
