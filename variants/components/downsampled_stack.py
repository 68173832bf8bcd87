"""Downsampled stack (paper section 3.1): Downsample by the stack's factor, run
the stack's blocks at the lower frame rate, Upsample back, and combine the stack
input and output with a Bypass (the authors' "out_combiner")."""
from __future__ import annotations

import torch
from torch import nn

from .bypass import make_bypass
from .downsample import Downsample, Upsample
from .zipformer_stack import ZipformerStack


class DownsampledStack(nn.Module):
    """x (B, T, D), lengths (B,), feature mask -> (B, T, D)."""

    def __init__(self, stack: ZipformerStack, dim: int, factor: int, *, bypass: bool = True):
        super().__init__()
        if factor < 2:
            raise ValueError(f"a DownsampledStack needs a factor >= 2, got {factor}")
        self.factor = factor
        self.downsample = Downsample(factor)
        self.encoder = stack
        self.upsample = Upsample(factor)
        self.out_combiner = make_bypass(dim, enabled=bypass)

    @property
    def num_layers(self) -> int:
        return self.encoder.num_layers

    def forward(self, x: torch.Tensor, lengths: torch.Tensor,
                feature_mask: torch.Tensor | float = 1.0) -> torch.Tensor:
        y, y_lens = self.downsample(x, lengths)
        y = self.encoder(y, y_lens, feature_mask)
        y = self.upsample(y, x.shape[1])
        return self.out_combiner(x, y)
