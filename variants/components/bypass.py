"""Bypass (paper section 3.2): combine a module's input x and output y with
learnable channel-wise weights c,

    Bypass(x, y) = (1 - c) * x + c * y  =  x + c * (y - x).

In training c is kept in [scale_min, 1] with scale_min 0.9 at first and 0.2
from 20000 batches on (linear in between, as in the authors' schedule). As in
the authors' implementation the limit acts on the gradient (c outside the range
is always pushed back towards it) rather than by clamping, and c starts at 0.5.
The Bypass at the end of each block also does per-sequence layer skipping
(``skip_rate``): a skipped sequence gets c = 0, i.e. the block is bypassed.
"""
from __future__ import annotations

import random

import torch
from torch import nn

from .lean_autograd import bypass_combine
from .param_limit import limit_param_value, limit_param_value_drawn
from .scheduled_float import FloatLike, ScheduledFloat, fill_decision, rate_value


def bypass_scale_min() -> ScheduledFloat:
    """The paper's minimum of c: 0.9 at first, 0.2 from 20000 batches on."""
    return ScheduledFloat((0.0, 0.9), (20000.0, 0.2), default=0.0)


class Bypass(nn.Module):
    """Learnable channel-wise combination of a module's input and output."""

    def __init__(self, num_channels: int, skip_rate: FloatLike = 0.0,
                 scale_min: FloatLike | None = None, scale_max: FloatLike = 1.0):
        super().__init__()
        self.num_channels = num_channels
        self.bypass_scale = nn.Parameter(torch.full((num_channels,), 0.5))
        self.skip_rate = skip_rate
        self.scale_min = bypass_scale_min() if scale_min is None else scale_min
        self.scale_max = scale_max

    #: the limit's draw and range, and the skip rate, from :meth:`decide` (scheduled_float.py)
    predrawn = False
    _decision: torch.Tensor | None = None

    def decide(self, device: torch.device) -> None:
        """The step's draw of the limit (the one limit_param_value makes) and its range."""
        lo, hi = float(self.scale_min), float(self.scale_max)
        if hi < lo:
            raise ValueError(f"limit_param_value: max {hi} < min {lo}")
        self._decision = fill_decision(self._decision, [float(random.random() < 0.6), lo, hi], device)

    def scale(self, batch_size: int) -> torch.Tensor:
        """c, shape (C,) in eval; (B, 1, C) or (C,) in training."""
        c = self.bypass_scale
        if not self.training:
            return c
        if self.predrawn:
            c = limit_param_value_drawn(c, self._decision)
        else:
            c = limit_param_value(c, float(self.scale_min), float(self.scale_max))
        skip_rate = rate_value(self.skip_rate, self.predrawn)   # drawn: a 0-dim tensor, always a mask
        if isinstance(skip_rate, torch.Tensor) or skip_rate != 0.0:
            c = c * (torch.rand(batch_size, 1, 1, device=c.device) > skip_rate)
        return c

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """x: module input, y: module output, both (B, T, C)."""
        if x.shape != y.shape or x.shape[-1] != self.num_channels:
            raise ValueError(f"Bypass({self.num_channels}) needs input and output of equal shape "
                             f"(..., {self.num_channels}); got {tuple(x.shape)} and {tuple(y.shape)}")
        return bypass_combine(x, y, self.scale(x.shape[0]))   # x + (y - x) * c, keeps no y - x

    def extra_repr(self) -> str:
        return f"{self.num_channels}"


class NoBypass(nn.Module):
    """The "No Bypass" ablation: the module output is used as is (c = 1).

    Layer skipping is kept (a skipped sequence takes the input), so that only
    the learnable combination is removed.
    """

    #: the skip rate from its drawn tensor (see scheduled_float.py)
    predrawn = False

    def __init__(self, skip_rate: FloatLike = 0.0):
        super().__init__()
        self.skip_rate = skip_rate

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        skip_rate = rate_value(self.skip_rate, self.predrawn) if self.training else 0.0
        if not isinstance(skip_rate, torch.Tensor) and skip_rate == 0.0:
            return y
        keep = (torch.rand(x.shape[0], 1, 1, device=x.device) > skip_rate).to(y.dtype)
        return x + (y - x) * keep


def make_bypass(num_channels: int, *, enabled: bool = True, skip_rate: FloatLike = 0.0) -> nn.Module:
    """A Bypass, or NoBypass when the ``bypass`` switch is off."""
    return Bypass(num_channels, skip_rate=skip_rate) if enabled else NoBypass(skip_rate)
