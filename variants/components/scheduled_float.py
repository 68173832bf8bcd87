"""ScheduledFloat: a float that follows a piecewise-linear schedule on the
training batch count (the authors' mechanism for every training-time rate:
Bypass minimum, Balancer limits, Whitener limits, dropout and layer skipping).

The owning module reads it with ``float(...)``. Before the first and after the
last point the value is held constant. ``AsrModel.set_batch_count(n)`` writes
``batch_count`` on every module that has the attribute, this one included.
As in the authors' implementation, ``default`` is returned in eval mode and
while ``batch_count`` has never been set.

Drawn decisions (for ``torch.compile``, see harness/train/compile.py): a
compiled graph that reads ``float(...)`` of a schedule, or a Python random draw,
is specialised on the value and compiles again when it changes, i.e. every
training step. A module with ``predrawn = True`` instead takes its per-step
decisions from 0-dim tensors that :func:`draw_decisions` fills before the
compiled region runs (``decide`` on each module, in ``modules()`` order, the
same Python random draws and schedule reads it would make in its forward); the
graph reads them as data, so one graph serves every step. The eager default
(``predrawn = False``) is unchanged.
"""
from __future__ import annotations

from typing import Union

import torch
from torch import nn


class ScheduledFloat(nn.Module):
    """Piecewise-linear function of ``batch_count``, given as ``(x, y)`` points."""

    def __init__(self, *points: tuple[float, float], default: float = 0.0):
        super().__init__()
        if not points:
            raise ValueError("ScheduledFloat needs at least one (batch_count, value) point")
        pts = []
        for p in points:
            if len(p) != 2:
                raise ValueError(f"ScheduledFloat points must be (batch_count, value) pairs, got {p!r}")
            pts.append((float(p[0]), float(p[1])))
        for (x0, _), (x1, _) in zip(pts, pts[1:]):
            if not x1 > x0:
                raise ValueError(f"ScheduledFloat points must have increasing batch counts, got {pts}")
        self.points = pts
        self.default = float(default)
        self.batch_count: float | None = None

    def value_at(self, batch_count: float) -> float:
        """The schedule's value at ``batch_count`` (ignores mode and default)."""
        pts = self.points
        if batch_count <= pts[0][0]:
            return pts[0][1]
        if batch_count >= pts[-1][0]:
            return pts[-1][1]
        for (x0, y0), (x1, y1) in zip(pts, pts[1:]):
            if x0 <= batch_count <= x1:
                return y0 + (y1 - y0) * (batch_count - x0) / (x1 - x0)
        raise AssertionError("unreachable")  # pragma: no cover

    def __float__(self) -> float:
        if self.batch_count is None or not self.training:
            return self.default
        return self.value_at(self.batch_count)

    def extra_repr(self) -> str:
        return f"points={self.points}, default={self.default}, batch_count={self.batch_count}"

    #: the value :meth:`decide` last read, as a float64 0-dim tensor (None before)
    tensor: torch.Tensor | None = None

    def decide(self, device: torch.device) -> None:
        """Read the value into :attr:`tensor` (in place: a compiled graph reads it as data)."""
        value, t = float(self), self.tensor
        if t is None or t.device != device:
            self.tensor = torch.tensor(value, dtype=torch.float64, device=device)
        else:
            t.fill_(value)


def fill_decision(t: torch.Tensor | None, values: list[float], device: torch.device) -> torch.Tensor:
    """``values`` in the float64 tensor ``t``, in place (a new one if ``t`` is None or elsewhere)."""
    host = torch.tensor(values, dtype=torch.float64)
    if t is None or t.device != device or t.shape != host.shape:
        return host.to(device)
    return t.copy_(host, non_blocking=True)


def rate_value(f: FloatLike, predrawn: bool) -> "float | torch.Tensor":
    """A rate as the module's forward uses it: the drawn 0-dim tensor of a ScheduledFloat
    when its decisions were drawn beforehand (``predrawn``), else ``float(f)``."""
    if predrawn and isinstance(f, ScheduledFloat):
        if f.tensor is None:
            raise RuntimeError("a predrawn module ran before draw_decisions filled its schedules")
        return f.tensor
    return float(f)


def decision_modules(module: nn.Module) -> list[nn.Module]:
    """The modules under ``module`` that draw per-step decisions, in ``modules()`` order."""
    return [m for m in module.modules() if callable(getattr(m, "decide", None))]


def set_predrawn(module: nn.Module, on: bool = True) -> None:
    """Switch every module under ``module`` that can take drawn decisions (``predrawn``)."""
    for m in module.modules():
        if hasattr(type(m), "predrawn"):
            m.predrawn = on


def draw_decisions(modules: list[nn.Module], device: torch.device) -> None:
    """One training step's decisions: ``decide`` on each module (eval: nothing to draw)."""
    for m in modules:
        if m.training:
            m.decide(device)


FloatLike = Union[float, ScheduledFloat]


def dropout_schedule(p: float) -> FloatLike:
    """The authors' encoder dropout: 0.3 at the start, falling to ``p`` at 20k batches.

    ``p`` is ``ZipformerConfig.dropout`` (0.1 in the authors' recipe); ``p = 0``
    disables dropout entirely.
    """
    if p == 0.0:
        return 0.0
    return ScheduledFloat((0.0, max(0.3, p)), (20000.0, p), default=p)
