"""Relative sinusoidal positional encoding (Transformer-XL, appendix B), as
used by the original Conformer (not the Zipformer's compact encoding in
``rel_pos_encoding.py``).

For a sequence of ``T`` frames it returns the input scaled by ``sqrt(d_model)``
and the encodings of the relative positions ``T-1, T-2, ..., -(T-1)`` (in that
order), each ``[sin(p w_0), cos(p w_0), sin(p w_1), ...]`` with
``w_i = 10000^(-2i / d_model)``. Dropout applies to both outputs. The table
has no parameters; it is cached per device and grown on demand (and rebuilt
outside ``torch.inference_mode`` if it was built inside).
"""
from __future__ import annotations

import math

import torch
from torch import nn

from .dropout import Dropout


def relative_sinusoids(max_rel: int, d_model: int, device: torch.device | None = None) -> torch.Tensor:
    """(2 * max_rel + 1, d_model) encodings of positions max_rel, ..., -max_rel (float32)."""
    pos = torch.arange(max_rel, -max_rel - 1, -1, dtype=torch.float32, device=device).unsqueeze(1)
    freqs = torch.exp(torch.arange(0, d_model, 2, dtype=torch.float32, device=device)
                      * (-math.log(10000.0) / d_model))
    angles = pos * freqs
    pe = torch.zeros(pos.size(0), d_model, dtype=torch.float32, device=device)
    pe[:, 0::2] = torch.sin(angles)
    pe[:, 1::2] = torch.cos(angles[:, : d_model // 2])
    return pe


class RelSinusoidalPositionalEncoding(nn.Module):
    """x (B, T, d) -> (x * sqrt(d), pos_emb (1, 2T - 1, d)), both after dropout."""

    def __init__(self, d_model: int, dropout: float = 0.1, initial_max_len: int = 1000) -> None:
        super().__init__()
        self.d_model = d_model
        self.xscale = math.sqrt(d_model)
        self.dropout = Dropout(dropout)
        self._initial_max_len = initial_max_len
        self._table: torch.Tensor | None = None  # positions max_rel..-max_rel, not in the state dict

    def _positions(self, t: int, device: torch.device) -> torch.Tensor:
        table = self._table
        stale = table is not None and table.is_inference() and not torch.is_inference_mode_enabled()
        if table is None or stale or table.device != device or table.size(0) < 2 * t - 1:
            max_rel = max(t - 1, self._initial_max_len - 1,
                          0 if table is None else (table.size(0) - 1) // 2)
            # a table made under inference_mode cannot enter autograd: it is rebuilt outside it
            table = relative_sinusoids(max_rel, self.d_model, device)
            self._table = table
        centre = (table.size(0) - 1) // 2
        return table[centre - (t - 1): centre + t]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if x.ndim != 3 or x.size(2) != self.d_model:
            raise ValueError(f"RelSinusoidalPositionalEncoding expects (batch, frames, {self.d_model}), got {tuple(x.shape)}")
        pos_emb = self._positions(x.size(1), x.device).to(x.dtype).unsqueeze(0)
        return self.dropout(x * self.xscale), self.dropout(pos_emb)
