"""Where a training step's time goes: data, forward, backward, optimizer, the rest.

The runner's overhead is everything outside forward/backward/optimizer (data
loading, schedules, logging, checkpoints). On a GPU each phase boundary
synchronizes so the times are real, not launch times.
"""
from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Iterator

import torch

PHASES = ("data", "forward", "backward", "optimizer")


class StepProfile:
    """Accumulates wall time per phase over many steps."""

    def __init__(self, device: torch.device):
        self.sync = device.type == "cuda"
        self.seconds = {p: 0.0 for p in PHASES}
        self.total = 0.0
        self.steps = 0
        self._t0: float | None = None

    def _now(self) -> float:
        if self.sync:
            torch.cuda.synchronize()
        return time.perf_counter()

    def start_step(self) -> None:
        self._t0 = self._now()

    def cancel_step(self) -> None:
        """Forget a started step (the data ran out)."""
        self._t0 = None

    def end_step(self) -> None:
        if self._t0 is not None:
            self.total += self._now() - self._t0
            self.steps += 1
            self._t0 = None

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        t = self._now()
        try:
            yield
        finally:
            self.seconds[name] += self._now() - t

    def summary(self) -> dict[str, float]:
        """Seconds per phase, ``other``, ``total``, ``steps`` and ``overhead`` (fraction)."""
        core = self.seconds["forward"] + self.seconds["backward"] + self.seconds["optimizer"]
        other = max(self.total - core - self.seconds["data"], 0.0)
        out = {**{k: round(v, 4) for k, v in self.seconds.items()}, "other": round(other, 4),
               "total": round(self.total, 4), "steps": self.steps}
        out["overhead"] = round((self.total - core) / self.total, 4) if self.total > 0 else 0.0
        return out


def format_profile(p: dict[str, float]) -> str:
    """One line: per-phase share of the step time and the runner's overhead."""
    total = p.get("total") or 0.0
    if not total:
        return "no steps profiled"
    parts = [f"{k} {100 * p.get(k, 0.0) / total:.1f}%" for k in (*PHASES, "other")]
    return (f"{p.get('steps', 0)} steps, {1000 * total / max(p.get('steps', 1), 1):.1f} ms/step: "
            + ", ".join(parts) + f"; outside forward/backward/optimizer: {100 * p['overhead']:.1f}%")
