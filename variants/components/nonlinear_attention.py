"""Non-Linear Attention, NLA (paper section 3.2, Figure 2 right).

The input is projected by three linear maps to A, B, C, each 3/4 of the input
dimension, and the output is  linear(A * attention(tanh(B) * C)),  where
``attention`` multiplies along time by one head (the first) of the attention
weights computed by the block's MHAW.
"""
from __future__ import annotations

import torch
from torch import nn

from .. import fast_paths
from .attention_weights import is_tracing, whitening_limit_schedule
from .balancer import make_balancer
from .lean_autograd import gate
from .scaled_linear import scaled_linear
from .scheduled_float import ScheduledFloat
from .whitener import make_whitener


class NonlinearAttention(nn.Module):
    """x (B, T, D), weights (>=1 heads, B, T, T) -> (B, T, D)."""

    def __init__(self, embed_dim: int, hidden_dim: int | None = None, *,
                 balancer: bool = True, whitener: bool = True):
        super().__init__()
        self.hidden_dim = hidden_dim = 3 * embed_dim // 4 if hidden_dim is None else hidden_dim
        self.in_proj = nn.Linear(embed_dim, 3 * hidden_dim, bias=True)
        # keeps tanh's input in a useful range (trained models sit around |x| ~ 3)
        self.balancer = make_balancer(
            hidden_dim, enabled=balancer, channel_dim=-1,
            min_positive=ScheduledFloat((0.0, 0.25), (20000.0, 0.05)),
            max_positive=ScheduledFloat((0.0, 0.75), (20000.0, 0.95)),
            min_abs=0.5, max_abs=5.0)
        self.whiten1 = make_whitener(enabled=whitener, num_groups=1,
                                     whitening_limit=whitening_limit_schedule(5.0),
                                     prob=(0.025, 0.25), grad_scale=0.01)
        self.out_proj = scaled_linear(hidden_dim, embed_dim, bias=True, initial_scale=0.05)
        self.whiten2 = make_whitener(enabled=whitener, num_groups=1,
                                     whitening_limit=whitening_limit_schedule(5.0, ratio=3.0),
                                     prob=(0.025, 0.25), grad_scale=0.01)

    def forward(self, x: torch.Tensor, attn_weights: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        if attn_weights.ndim != 4 or attn_weights.shape[1:] != (b, t, t):
            raise ValueError(f"NonlinearAttention expected weights of shape (heads, {b}, {t}, {t}), "
                             f"got {tuple(attn_weights.shape)}")
        gate_in, value, out_gate = self.in_proj(x).chunk(3, dim=-1)   # B, C, A of the paper
        if fast_paths.enabled() and not (torch.is_grad_enabled() and gate_in.requires_grad) and not is_tracing():
            # no gradient (eval): the projection's and the product's outputs are new, so
            # tanh and the output gate act in place (same values, two tensors fewer)
            value = torch.mul(self.whiten1(value), self.balancer(gate_in).tanh_())
            y = torch.matmul(attn_weights[0:1], value.unsqueeze(0)).squeeze(0).mul_(out_gate)
            return self.whiten2(self.out_proj(y))
        value = gate(self.whiten1(value), self.balancer(gate_in), "tanh")  # keeps no tanh output
        value = torch.matmul(attn_weights[0:1], value.unsqueeze(0))  # (1, B, T, hidden)
        y = value.squeeze(0) * out_gate
        return self.whiten2(self.out_proj(y))
