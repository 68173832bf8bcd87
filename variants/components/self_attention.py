"""Self-Attention, SA (paper section 3.2): the second half of multi-head
self-attention. It takes attention weights computed elsewhere (by an MHAW
module, possibly shared with NLA and another SA) and aggregates projected
values over time: out = W_o concat_h(A_h V_h)."""
from __future__ import annotations

import torch
from torch import nn

from .attention_weights import whitening_limit_schedule
from .scaled_linear import scaled_linear
from .whitener import make_whitener


class SelfAttention(nn.Module):
    """x (B, T, D), weights (heads, B, T, T) -> (B, T, D)."""

    def __init__(self, embed_dim: int, num_heads: int, value_head_dim: int, *,
                 whitener: bool = True):
        super().__init__()
        self.num_heads = num_heads
        self.value_head_dim = value_head_dim
        self.in_proj = nn.Linear(embed_dim, num_heads * value_head_dim, bias=True)
        self.out_proj = scaled_linear(num_heads * value_head_dim, embed_dim, bias=True,
                                      initial_scale=0.05)
        self.whiten = make_whitener(enabled=whitener, num_groups=1,
                                    whitening_limit=whitening_limit_schedule(7.5, ratio=3.0),
                                    prob=(0.025, 0.25), grad_scale=0.01)

    def forward(self, x: torch.Tensor, attn_weights: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        h = self.num_heads
        if attn_weights.shape != (h, b, t, t):
            raise ValueError(f"SelfAttention expected attention weights of shape {(h, b, t, t)}, "
                             f"got {tuple(attn_weights.shape)}")
        v = self.in_proj(x).reshape(b, t, h, self.value_head_dim).permute(2, 0, 1, 3)
        y = torch.matmul(attn_weights, v)                      # (h, B, T, vd)
        y = y.permute(1, 2, 0, 3).reshape(b, t, h * self.value_head_dim)
        return self.whiten(self.out_proj(y))
