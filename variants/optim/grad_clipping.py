"""Gradient clipping relative to the recent median gradient norm (ScaledAdam's).

The paper leaves clipping out; the authors' ScaledAdam clips the whole model's
*normalized* gradient norm (each tensor's gradient times that tensor's RMS,
since the update is scaled by it; scalar parameters' gradients times their lr
scale) to ``clipping_scale`` (2.0) times the median of the norms of the most
recent ``update_period`` (100) steps. The threshold is re-estimated every
``update_period`` steps, and early on at steps 10, 20 and 40 from the norms
seen so far with a doubled threshold, since norms change fast at the start.
Before step 10 nothing is clipped. A non-finite norm gives scale 0 (the
optimizer zeroes the gradients; momentum still moves the parameters), and a
non-finite median is an error.
"""
from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass
from typing import Any

import torch

log = logging.getLogger(__name__)

#: steps, besides multiples of the update period, at which the threshold is
#: estimated from the norms seen so far (with the threshold doubled)
EARLY_ESTIMATE_STEPS = (10, 20, 40)


@dataclass
class ClippingEvent:
    """One clipped step: what was measured and what was done."""

    step: int
    grad_norm: float
    threshold: float
    scale: float
    dominant_param: str = ""
    dominant_share: float = float("nan")


class MedianGradClipping:
    """Decides, step by step, the factor (<= 1) to scale all gradients by."""

    def __init__(self, clipping_scale: float | None = 2.0, update_period: int = 100) -> None:
        if clipping_scale is not None and (not isinstance(clipping_scale, (int, float))
                                           or not clipping_scale > 0):
            raise ValueError(f"clipping_scale must be a number > 0 or None (no clipping), "
                             f"got {clipping_scale!r}")
        if isinstance(update_period, bool) or not isinstance(update_period, int) or update_period < 1:
            raise ValueError(f"clipping_update_period must be an integer >= 1, got {update_period!r}")
        self.clipping_scale = None if clipping_scale is None else float(clipping_scale)
        self.update_period = update_period
        self.step = 0
        self.norms = torch.zeros(update_period, dtype=torch.float64)
        self.threshold: float | None = None
        self.num_clipped = 0            # since the last threshold estimate
        self.num_clipped_total = 0
        self.last_norm = float("nan")
        self.last_scale = 1.0
        self.last_event: ClippingEvent | None = None

    @property
    def enabled(self) -> bool:
        return self.clipping_scale is not None

    def scale_for(self, norm: float) -> float:
        """Record this step's normalized gradient norm and return the factor for it."""
        step = self.step
        self.step += 1
        self.last_norm = norm
        self.norms[step % self.update_period] = norm
        early = step in EARLY_ESTIMATE_STEPS and step < self.update_period
        if early or (step > 0 and step % self.update_period == 0):
            self._estimate_threshold(step, early)
        if not math.isfinite(norm):
            scale = 0.0
        elif self.threshold is None or norm <= self.threshold:
            scale = 1.0
        else:
            scale = self.threshold / norm
        if scale < 1.0:
            self.num_clipped += 1
            self.num_clipped_total += 1
            self.last_event = ClippingEvent(step, norm, float(self.threshold or float("nan")), scale)
        self.last_scale = scale
        return scale

    def _estimate_threshold(self, step: int, early: bool) -> None:
        assert self.clipping_scale is not None
        seen = min(step + 1, self.update_period)
        recent = self.norms[:seen].sort().values
        quartiles = [recent[min(seen - 1, (seen * q) // 4)].item() for q in range(5)]
        median = quartiles[2]
        if not math.isfinite(median):
            raise RuntimeError(f"gradient clipping: the median gradient norm over the last "
                               f"{seen} steps is {median}: too many gradients were not finite")
        threshold = self.clipping_scale * median * (2.0 if early else 1.0)
        percent = 100.0 * self.num_clipped / seen
        log.info("clipping_scale=%s, grad-norm quartiles %s, threshold=%.3e, percent-clipped=%.1f",
                 self.clipping_scale, " ".join(f"{q:.3e}" for q in quartiles), threshold, percent)
        self.threshold = threshold
        self.num_clipped = 0

    def state_dict(self) -> dict[str, Any]:
        return {"clipping_scale": self.clipping_scale, "update_period": self.update_period,
                "step": self.step, "norms": self.norms.clone(), "threshold": self.threshold,
                "num_clipped": self.num_clipped, "num_clipped_total": self.num_clipped_total,
                "last_norm": self.last_norm, "last_scale": self.last_scale,
                "last_event": None if self.last_event is None else asdict(self.last_event)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["update_period"] != self.update_period:
            raise ValueError(f"checkpoint has clipping_update_period={state['update_period']} "
                             f"but this optimizer has {self.update_period}")
        self.step = int(state["step"])
        self.norms = state["norms"].detach().to(dtype=torch.float64, device="cpu").clone()
        self.threshold = state["threshold"]
        self.num_clipped = int(state["num_clipped"])
        self.num_clipped_total = int(state["num_clipped_total"])
        self.last_norm = float(state["last_norm"])
        self.last_scale = float(state["last_scale"])
        ev = state.get("last_event")
        self.last_event = None if ev is None else ClippingEvent(**ev)
