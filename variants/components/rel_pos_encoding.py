"""The authors' compact relative positional encoding.

For a sequence of T frames it returns one vector of ``pos_dim`` per relative
offset d = -(T-1) ... T-1 (key position minus query position), shape
(1, 2T-1, pos_dim). Offsets are first compressed logarithmically,

    d' = L * sign(d) * (log(|d| + L) - log L),   L = sqrt(pos_dim),

then mapped into (-pi/2, pi/2) by atan(d' / s) with s = length_factor *
pos_dim / (2 pi), and encoded by cos/sin at frequencies 1 ... pos_dim/2. The
last channel is a constant 1 (a bias term for the per-head projections).
Small offsets stay distinguishable while large ones (1000 vs 1001) are
nearly identical, which is what relative positions need.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from .dropout import dropout
from .scheduled_float import FloatLike


def compact_rel_pos_encoding(seq_len: int, pos_dim: int, length_factor: float = 1.0,
                             device: torch.device | None = None) -> torch.Tensor:
    """(2 * seq_len - 1, pos_dim) float32 table; row i is offset i - (seq_len - 1).

    Computed in float64 and rounded: a row's values then do not depend on ``seq_len``
    (float32 vector math differs by an ulp between vector lanes and the scalar tail),
    so a model's output does not depend on the longest input it has seen (the cached
    table) and a resumed run repeats an uninterrupted one.
    """
    offsets = torch.arange(-(seq_len - 1), seq_len, device=device, dtype=torch.float64).unsqueeze(1)
    freqs = torch.arange(1, pos_dim // 2 + 1, device=device, dtype=torch.float64)
    compression = pos_dim ** 0.5
    compressed = compression * offsets.sign() * (
        (offsets.abs() + compression).log() - math.log(compression))
    length_scale = length_factor * pos_dim / (2.0 * math.pi)
    angle = (compressed / length_scale).atan() * freqs
    pe = torch.empty(offsets.shape[0], pos_dim, device=device, dtype=torch.float32)
    pe[:, 0::2] = angle.cos()
    pe[:, 1::2] = angle.sin()
    pe[:, -1] = 1.0
    return pe


class RelPositionalEncoding(nn.Module):
    """x (B, T, C) -> positional embedding (1, 2T-1, pos_dim), with dropout in training."""

    def __init__(self, pos_dim: int, dropout: FloatLike = 0.15, length_factor: float = 1.0):
        super().__init__()
        if pos_dim <= 0 or pos_dim % 2:
            raise ValueError(f"pos_dim must be a positive even number, got {pos_dim}")
        if length_factor < 1.0:
            raise ValueError(f"length_factor must be >= 1.0, got {length_factor}")
        self.pos_dim = pos_dim
        self.length_factor = length_factor
        self.dropout = dropout
        self._cache: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        seq_len = x.shape[1]
        if torch.compiler.is_compiling():       # in the graph: no cache for guards to watch
            pe = compact_rel_pos_encoding(seq_len, self.pos_dim, self.length_factor, x.device)
            return dropout(pe.unsqueeze(0), float(self.dropout), self.training)
        cache = self._cache
        if cache is None or cache.device != x.device or cache.shape[0] < 2 * seq_len - 1:
            cache = compact_rel_pos_encoding(seq_len, self.pos_dim, self.length_factor, x.device)
            self._cache = cache
        mid = cache.shape[0] // 2
        pe = cache[mid - (seq_len - 1): mid + seq_len].unsqueeze(0)
        return dropout(pe, float(self.dropout), self.training)

    def extra_repr(self) -> str:
        return f"pos_dim={self.pos_dim}"
