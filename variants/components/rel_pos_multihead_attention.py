"""Multi-head self-attention with relative positional encoding (Transformer-XL,
section 3.3), as in the original Conformer.

Scores for query ``i`` and key ``j`` in head ``h``::

    ((q_i + u_h) . k_j + (q_i + v_h) . W_pos r_{i-j}) / sqrt(d_head)

with learnable ``pos_bias_u`` (``u``) and ``pos_bias_v`` (``v``) and the
relative encodings ``r`` of
:class:`~variants.components.rel_sinusoidal_positional_encoding.RelSinusoidalPositionalEncoding`.
Padded keys are masked out. Matrix products use ``torch.matmul`` so that the
DeepSpeed FLOPs profiler counts them.
"""
from __future__ import annotations

import torch
from torch import nn

from .attention_weights import gather_relative, is_tracing
from .dropout import dropout


def rel_shift(scores: torch.Tensor) -> torch.Tensor:
    """(B, H, T, 2T - 1) scores against positions T-1..-(T-1) -> (B, H, T, T) with
    entry (i, j) taken from relative position i - j (column T - 1 - i + j)."""
    b, h, t, n = scores.shape
    if is_tracing():
        return gather_relative(scores)
    if n != 2 * t - 1:
        raise ValueError(f"rel_shift expects 2*T-1 = {2 * t - 1} positions, got {n}")
    scores = scores.contiguous()
    sb, sh, st, sn = scores.stride()
    return scores.as_strided((b, h, t, t), (sb, sh, st - sn, sn),
                             storage_offset=scores.storage_offset() + (t - 1) * sn)


class RelPositionMultiheadAttention(nn.Module):
    """x (B, T, d), pos_emb (1 or B, 2T - 1, d), key_padding_mask (B, T) True at padding -> (B, T, d)."""

    def __init__(self, embed_dim: int, num_heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim={embed_dim} is not divisible by num_heads={num_heads}")
        self.embed_dim = embed_dim
        self.num_heads = num_heads
        self.head_dim = embed_dim // num_heads
        self.dropout = dropout
        self.in_proj = nn.Linear(embed_dim, 3 * embed_dim)
        self.out_proj = nn.Linear(embed_dim, embed_dim)
        self.linear_pos = nn.Linear(embed_dim, embed_dim, bias=False)
        self.pos_bias_u = nn.Parameter(torch.empty(num_heads, self.head_dim))
        self.pos_bias_v = nn.Parameter(torch.empty(num_heads, self.head_dim))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """The authors' initialisation: Xavier-uniform projections and biases u, v; zero biases."""
        nn.init.xavier_uniform_(self.in_proj.weight)
        nn.init.zeros_(self.in_proj.bias)
        nn.init.zeros_(self.out_proj.bias)
        nn.init.xavier_uniform_(self.pos_bias_u)
        nn.init.xavier_uniform_(self.pos_bias_v)

    def forward(self, x: torch.Tensor, pos_emb: torch.Tensor,
                key_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        b, t, d = x.shape
        if d != self.embed_dim:
            raise ValueError(f"RelPositionMultiheadAttention expects {self.embed_dim} channels, got {d}")
        if pos_emb.ndim != 3 or pos_emb.size(1) != 2 * t - 1 or pos_emb.size(0) not in (1, b):
            raise ValueError(f"pos_emb must have shape (1 or {b}, {2 * t - 1}, {d}), got {tuple(pos_emb.shape)}")
        h, dh = self.num_heads, self.head_dim
        q, k, v = self.in_proj(x).view(b, t, 3, h, dh).unbind(dim=2)  # each (B, T, H, dh)
        p = self.linear_pos(pos_emb).view(pos_emb.size(0), 2 * t - 1, h, dh)

        k = k.permute(0, 2, 3, 1)                                   # (B, H, dh, T)
        ac = torch.matmul((q + self.pos_bias_u).transpose(1, 2), k)   # (B, H, T, T)
        bd = torch.matmul((q + self.pos_bias_v).transpose(1, 2), p.permute(0, 2, 3, 1))  # (B, H, T, 2T-1)
        scores = (ac + rel_shift(bd)) * (dh ** -0.5)
        if key_padding_mask is not None:
            if key_padding_mask.shape != (b, t):
                raise ValueError(f"key_padding_mask must have shape ({b}, {t}), got {tuple(key_padding_mask.shape)}")
            scores = scores.masked_fill(key_padding_mask[:, None, None, :], float("-inf"))
        weights = nn.functional.softmax(scores, dim=-1)
        weights = dropout(weights, self.dropout, self.training)
        out = torch.matmul(weights.to(v.dtype), v.transpose(1, 2))  # (B, H, T, dh)
        return self.out_proj(out.transpose(1, 2).reshape(b, t, d))
