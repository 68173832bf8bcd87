"""Batch counters scaled by the real batch size.

The model's schedules (Bypass minimum, Balancer/Whitener probabilities,
dropout and layer-skip rates) and the LR schedule count batches. A batch of
``max_duration`` seconds on each of ``world_size`` GPUs is worth
``max_duration x world_size / ref`` batches of the reference size, so fewer
GPUs or smaller batches do not silently stretch or squeeze a schedule.
"""
from __future__ import annotations

from typing import Optional


def model_batch_count(batches: int, max_duration: float, world_size: int, ref_duration: float) -> float:
    """The authors' adjusted count for ``set_batch_count`` (reference 600 s in their recipe)."""
    return batches * max_duration * world_size / ref_duration


def lr_batch_count(steps: int, accum_grad: int, max_duration: float, world_size: int,
                   ref_duration: Optional[float]) -> float:
    """Optimizer steps in units of the batch the LR schedule was tuned for (identity if None)."""
    if ref_duration is None:
        return float(steps)
    return steps * accum_grad * max_duration * world_size / ref_duration
