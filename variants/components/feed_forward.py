"""Feed-forward module of the Zipformer block: Linear -> activation (SwooshL in
the paper) -> dropout -> Linear. A block has three, with hidden dims 3/4, 1 and
5/4 of the stack's feed-forward dim."""
from __future__ import annotations

import torch
from torch import nn

from .activation import create_activation
from .activation_dropout_linear import activation_dropout_linear
from .attention_weights import whitening_limit_schedule
from .balancer import make_balancer
from .dropout import TimeSharedDropout
from .scaled_linear import scaled_linear
from .scheduled_float import FloatLike
from .whitener import make_whitener


class FeedForward(nn.Module):
    """x (B, T, D) -> (B, T, D)."""

    def __init__(self, embed_dim: int, hidden_dim: int, dropout: FloatLike = 0.0, *,
                 activation: str = "swoosh", balancer: bool = True, whitener: bool = True):
        super().__init__()
        self.in_proj = nn.Linear(embed_dim, hidden_dim)
        # no "dead" hidden units: mostly-positive, reasonably large inputs
        self.hidden_balancer = make_balancer(hidden_dim, enabled=balancer, channel_dim=-1,
                                             min_positive=0.3, max_positive=1.0,
                                             min_abs=0.75, max_abs=5.0)
        self.activation = create_activation(activation, "feed_forward")
        self.dropout = TimeSharedDropout(dropout)
        self.out_proj = scaled_linear(hidden_dim, embed_dim, bias=True, initial_scale=0.1)
        self.out_whiten = make_whitener(enabled=whitener, num_groups=1,
                                        whitening_limit=whitening_limit_schedule(7.5),
                                        prob=(0.025, 0.25), grad_scale=0.01)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.hidden_balancer(self.in_proj(x))
        # activation -> dropout -> out_proj keeps only x for backward (float32 mask)
        y = activation_dropout_linear(x, self.activation, self.out_proj,
                                      self.dropout.mask(x, torch.float32))
        return self.out_whiten(y)
