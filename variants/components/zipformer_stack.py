"""A stack of blocks at one frame rate (paper Figure 1), with its relative
positional encoding. Each block's final Bypass also skips the block for whole
sequences early in training; as in the authors' implementation the stacks warm
up in turn (stack i of n over batches [i+1, i+2] * 4000 / (n+1)), each block's
skip rate falling from 0.5 to 0.035 * sqrt(downsampling factor)."""
from __future__ import annotations

import torch
from torch import nn

from .padding_mask import padding_mask
from .rel_pos_encoding import RelPositionalEncoding
from .scheduled_float import ScheduledFloat


class ZipformerStack(nn.Module):
    """x (B, T, D), lengths (B,), feature mask (B, 1, D) or 1.0 -> (B, T, D)."""

    def __init__(self, blocks: list[nn.Module], pos_dim: int, warmup_begin: float = 0.0,
                 warmup_end: float = 0.0, initial_skip_rate: float = 0.5,
                 final_skip_rate: float = 0.05):
        super().__init__()
        if not blocks:
            raise ValueError("a ZipformerStack needs at least one block")
        if not 0.0 <= warmup_begin <= warmup_end:
            raise ValueError(f"need 0 <= warmup_begin <= warmup_end, got {warmup_begin}, {warmup_end}")
        self.encoder_pos = RelPositionalEncoding(pos_dim, dropout=0.15)
        self.layers = nn.ModuleList(blocks)
        delta = (warmup_end - warmup_begin) / len(blocks)
        for i, block in enumerate(self.layers):
            begin = warmup_begin + i * delta
            end = begin + delta
            points = ((begin, initial_skip_rate), (end, final_skip_rate)) if end > begin \
                else ((begin, final_skip_rate),)
            block.bypass.skip_rate = ScheduledFloat(*points, default=0.0)

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor,
                feature_mask: torch.Tensor | float = 1.0) -> torch.Tensor:
        mask = padding_mask(lengths, x.shape[1])
        pos_emb = self.encoder_pos(x).to(x.dtype)
        unmasked = isinstance(feature_mask, float) and feature_mask == 1.0   # eval: x * 1.0 is x
        x = x if unmasked else x * feature_mask
        for block in self.layers:
            x = block(x, pos_emb, mask)
            x = x if unmasked else x * feature_mask
        return x
