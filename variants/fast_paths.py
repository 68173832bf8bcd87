"""A switch between the fused (fast) and the reference arithmetic of a few hot spots.

The fused paths compute the same quantities as the reference ones (within
float rounding; tests compare the two): the Balancer's backward from
per-channel statistics in closed form, ConvNeXt's point-wise convolutions as
matrix products, and its depth-wise convolution in channels-last layout.
They are on by default; ``reference_paths()`` turns them off for a block (the
speed benchmark and the equality tests run both in one process).
"""
from __future__ import annotations

import contextlib
from typing import Iterator

_enabled = True


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
