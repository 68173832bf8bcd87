"""CTC output head of the authors' zipformer recipe: dropout (0.1), Linear to
the vocabulary, log-softmax."""
from __future__ import annotations

import torch
from torch import nn

from ..components.dropout import Dropout


class CtcHead(nn.Module):
    """enc (..., encoder_dim) -> log-probabilities (..., vocab_size)."""

    def __init__(self, encoder_dim: int, vocab_size: int, dropout: float = 0.1) -> None:
        super().__init__()
        if encoder_dim <= 0 or vocab_size <= 1:
            raise ValueError(f"CtcHead needs encoder_dim > 0 and vocab_size > 1, got {encoder_dim}, {vocab_size}")
        self.dropout = Dropout(dropout)
        self.linear = nn.Linear(encoder_dim, vocab_size)

    def forward(self, enc: torch.Tensor) -> torch.Tensor:
        if enc.size(-1) != self.linear.in_features:
            raise ValueError(f"CtcHead expects {self.linear.in_features} channels, got shape {tuple(enc.shape)}")
        return nn.functional.log_softmax(self.linear(self.dropout(enc)), dim=-1)
