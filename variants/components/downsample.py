"""Downsample and Upsample (paper section 3.1, "Downsampled stacks").

Downsample by a factor k averages every k frames with k learnable scalar
weights after a softmax; Upsample repeats each frame k times. As in the authors'
implementation a sequence whose length is not a multiple of k is padded by
repeating its last frame. Here that is done per utterance, from the lengths,
so that what padded frames contain never reaches a valid output frame.
"""
from __future__ import annotations

import torch
from torch import nn

from .lean_autograd import weighted_group_sum


def downsampled_lengths(lengths: torch.Tensor, factor: int) -> torch.Tensor:
    """ceil(lengths / factor): the number of output frames that hold valid input."""
    return (lengths + factor - 1) // factor


class Downsample(nn.Module):
    """(B, T, C) -> (B, ceil(T / factor), C), a softmax-weighted average of each group of frames."""

    def __init__(self, factor: int):
        super().__init__()
        if factor < 1:
            raise ValueError(f"Downsample factor must be >= 1, got {factor}")
        self.factor = factor
        self.bias = nn.Parameter(torch.zeros(factor))

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        b, t, c = x.shape
        k = self.factor
        t_out = (t + k - 1) // k
        src = torch.arange(t_out * k, device=x.device)
        if lengths is None:
            idx = src.clamp(max=t - 1).expand(b, -1)
        else:
            if lengths.shape != (b,):
                raise ValueError(f"Downsample lengths must have shape ({b},), got {tuple(lengths.shape)}")
            last = (lengths.to(x.device).clamp(min=1, max=t) - 1).unsqueeze(1)
            idx = torch.minimum(src.unsqueeze(0), last)
        weights = self.bias.softmax(dim=0).unsqueeze(-1)  # (k, 1)
        if lengths is None and t_out * k == t:
            y = (x.reshape(b, t_out, k, c) * weights).sum(dim=2)
        else:   # keeps x, not also its gathered copy, for backward
            y = weighted_group_sum(x, idx.unsqueeze(-1).expand(b, t_out * k, c), weights, k)
        return y, None if lengths is None else downsampled_lengths(lengths, k)

    def extra_repr(self) -> str:
        return f"factor={self.factor}"


class Upsample(nn.Module):
    """(B, T, C) -> (B, T * factor, C) by repetition, optionally cut to ``length`` frames."""

    def __init__(self, factor: int):
        super().__init__()
        if factor < 1:
            raise ValueError(f"Upsample factor must be >= 1, got {factor}")
        self.factor = factor

    def forward(self, x: torch.Tensor, length: int | None = None) -> torch.Tensor:
        if length is not None and torch.compiler.is_compiling():
            # by index (the same values): a cut repetition's layout depends on length % factor,
            # which a compiled graph would guard on and compile again for
            return x.index_select(1, torch.arange(length, device=x.device) // self.factor)
        y = x.repeat_interleave(self.factor, dim=1)
        if length is not None:
            if length > y.shape[1]:
                raise ValueError(f"Upsample cannot produce {length} frames from {x.shape[1]} x {self.factor}")
            y = y[:, :length]
        return y

    def extra_repr(self) -> str:
        return f"factor={self.factor}"
