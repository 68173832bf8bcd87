"""Feed-forward module of the Zipformer block: Linear -> activation (SwooshL in
the paper) -> dropout -> Linear. A block has three, with hidden dims 3/4, 1 and
5/4 of the stack's feed-forward dim.

In training (off the CPU-only fast paths, see :mod:`variants.fast_paths`) the
module keeps nothing of its own for the backward pass: the hidden layer is
recomputed from the input, which the residual stream keeps anyway (the
hidden pre-activation is the largest tensor a Zipformer block would keep).
The random draws (the hidden Balancer's, the dropout mask) are made once,
before, so the recomputation repeats the forward exactly."""
from __future__ import annotations

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from .activation import create_activation
from .activation_dropout_linear import activation_dropout_linear
from .attention_weights import whitening_limit_schedule
from .balancer import Balancer, apply_balancer, make_balancer
from .dropout import TimeSharedDropout
from .lean_autograd import recomputes_hidden
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
        if recomputes_hidden(x, self.training, self.hidden_balancer):
            return self.out_whiten(self._recomputed(x))
        x = self.hidden_balancer(self.in_proj(x))
        # activation -> dropout -> out_proj keeps only x for backward (float32 mask)
        y = activation_dropout_linear(x, self.activation, self.out_proj,
                                      self.dropout.mask(x, torch.float32))
        return self.out_whiten(y)

    def _recomputed(self, x: torch.Tensor) -> torch.Tensor:
        """``in_proj -> hidden Balancer -> activation -> dropout -> out_proj``, keeping only ``x``."""
        hidden = (*x.shape[:-1], self.in_proj.out_features)
        balance = (self.hidden_balancer.draw(hidden, True)
                   if isinstance(self.hidden_balancer, Balancer) else None)
        mask = self.dropout.mask(x[..., :1].expand(hidden), torch.float32)

        def hidden_to_out(x: torch.Tensor) -> torch.Tensor:
            h = self.in_proj(x)
            h = h if balance is None else apply_balancer(h, balance)
            return activation_dropout_linear(h, self.activation, self.out_proj, mask)

        return checkpoint(hidden_to_out, x, use_reentrant=False, preserve_rng_state=False)
