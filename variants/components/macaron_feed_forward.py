"""The Conformer feed-forward module: Linear(d -> ff), activation (Swish),
dropout, Linear(ff -> d). A Conformer layer holds two of them around its
attention and convolution modules (macaron style), each added to the residual
stream with weight 1/2 by the layer."""
from __future__ import annotations

import torch
from torch import nn

from .activation import create_activation
from .dropout import Dropout


class MacaronFeedForward(nn.Module):
    """x (..., d) -> (..., d)."""

    def __init__(self, d_model: int, dim_feedforward: int, dropout: float = 0.1,
                 activation: str = "swish") -> None:
        super().__init__()
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.activation = create_activation(activation, "feed_forward")
        self.dropout = Dropout(dropout)
        self.linear2 = nn.Linear(dim_feedforward, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear2(self.dropout(self.activation(self.linear1(x))))
