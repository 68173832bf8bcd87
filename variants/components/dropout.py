"""Dropout whose mask is shared along time (the authors' Dropout3 on the time axis),
with a rate that may follow a ScheduledFloat."""
from __future__ import annotations

import torch
from torch import nn

from .scheduled_float import FloatLike, ScheduledFloat, rate_value


class TimeSharedDropout(nn.Module):
    """x (B, T, C): one mask of shape (B, 1, C) per batch, scaled by 1/(1-p)."""

    #: a scheduled rate read from its drawn tensor (see scheduled_float.py)
    predrawn = False

    def __init__(self, p: FloatLike):
        super().__init__()
        self.p = p

    def mask(self, x: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor | None:
        """The scaled (B, 1, C) mask (in ``dtype``, default x's) for ``x``; None for the identity."""
        if self.predrawn and self.training and isinstance(self.p, ScheduledFloat):
            pt = rate_value(self.p, True)      # drawn each step: a mask even where the rate is 0
            keep = torch.rand(x.shape[0], 1, x.shape[-1], device=x.device) > pt
            return keep.to(dtype or x.dtype) * (1.0 / (1.0 - pt)).to(dtype or x.dtype)
        p = float(self.p)
        if not self.training or p == 0.0:
            return None
        keep = torch.rand(x.shape[0], 1, x.shape[-1], device=x.device) > p
        return keep.to(dtype or x.dtype) * (1.0 / (1.0 - p))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mask = self.mask(x)
        return x if mask is None else x * mask
