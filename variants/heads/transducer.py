"""Transducer heads of the authors' zipformer recipe: the stateless decoder
(prediction network) and the joiner.

Decoder: embedding of the last ``context_size`` tokens, mixed by a grouped
Conv1d over the context (groups of 4 channels, no bias), then ReLU
(Ghodsi et al., "RNN-transducer with stateless prediction network", with the
authors' extra convolution). Negative token ids (padding) embed to zero.
A Balancer (training only) constrains the embedding and the output, as in the
authors' decoder.

Joiner: ``output_linear(tanh(encoder_proj(enc) + decoder_proj(dec)))``; the two
projections start scaled by 0.25.
"""
from __future__ import annotations

import torch
from torch import nn

from ..components.balancer import Balancer
from ..components.scaled_linear import scaled_linear

#: channels per group of the decoder's context convolution
DECODER_GROUP_SIZE = 4


def _decoder_balancer(decoder_dim: int) -> Balancer:
    return Balancer(decoder_dim, channel_dim=-1, min_positive=0.0, max_positive=1.0,
                    min_abs=0.5, max_abs=1.0, prob=0.05)


class Decoder(nn.Module):
    """Stateless transducer decoder: y (B, U) token ids -> (B, U, decoder_dim)."""

    def __init__(self, vocab_size: int, decoder_dim: int, blank_id: int, context_size: int) -> None:
        super().__init__()
        if vocab_size <= 1:
            raise ValueError(f"vocab_size must be > 1, got {vocab_size}")
        if not 0 <= blank_id < vocab_size:
            raise ValueError(f"blank_id must lie in [0, {vocab_size}), got {blank_id}")
        if context_size < 1:
            raise ValueError(f"context_size must be >= 1, got {context_size}")
        if context_size > 1 and decoder_dim % DECODER_GROUP_SIZE:
            raise ValueError(f"decoder_dim={decoder_dim} must be divisible by {DECODER_GROUP_SIZE} "
                             "(the context convolution uses groups of 4 channels)")
        self.vocab_size = vocab_size
        self.decoder_dim = decoder_dim
        self.blank_id = blank_id
        self.context_size = context_size
        self.embedding = nn.Embedding(vocab_size, decoder_dim)
        self.balancer = _decoder_balancer(decoder_dim)
        if context_size > 1:
            self.conv: nn.Module = nn.Conv1d(decoder_dim, decoder_dim, kernel_size=context_size,
                                             groups=decoder_dim // DECODER_GROUP_SIZE, bias=False)
            self.balancer2: nn.Module = _decoder_balancer(decoder_dim)
        else:
            self.conv = nn.Identity()
            self.balancer2 = nn.Identity()

    def forward(self, y: torch.Tensor, need_pad: bool = True) -> torch.Tensor:
        """y: (B, U) token ids, negative for padding.

        need_pad=True (training): y is the label sequence with blank prepended;
        it is left-padded with ``context_size - 1`` zero embeddings so output u
        depends on tokens u-context_size+1..u. need_pad=False (decoding): y holds
        exactly the last ``context_size`` tokens and the output has U = 1.
        """
        if y.ndim != 2:
            raise ValueError(f"Decoder expects token ids of shape (batch, tokens), got {tuple(y.shape)}")
        if y.dtype.is_floating_point or y.dtype == torch.bool:
            raise TypeError(f"Decoder expects integer token ids, got {y.dtype}")
        if not need_pad and y.size(1) != self.context_size:
            raise ValueError(f"with need_pad=False, y must hold the last context_size={self.context_size} "
                             f"tokens, got {y.size(1)}")
        y = y.long()
        if y.numel() and int(y.max()) >= self.vocab_size:
            raise ValueError(f"token id {int(y.max())} is outside the vocabulary [0, {self.vocab_size})")
        out = self.embedding(y.clamp(min=0)) * (y >= 0).unsqueeze(-1)
        out = self.balancer(out)
        if self.context_size > 1:
            out = out.transpose(1, 2)  # (B, C, U)
            if need_pad:
                out = nn.functional.pad(out, (self.context_size - 1, 0))
            out = nn.functional.relu(self.conv(out).transpose(1, 2))
            out = self.balancer2(out)
        return out


class Joiner(nn.Module):
    """Joint network: logits over the vocabulary for every (frame, token) pair given."""

    def __init__(self, encoder_dim: int, decoder_dim: int, joiner_dim: int, vocab_size: int) -> None:
        super().__init__()
        for name, v in (("encoder_dim", encoder_dim), ("decoder_dim", decoder_dim),
                        ("joiner_dim", joiner_dim), ("vocab_size", vocab_size)):
            if v <= 0:
                raise ValueError(f"{name} must be positive, got {v}")
        self.encoder_proj = scaled_linear(encoder_dim, joiner_dim, initial_scale=0.25)
        self.decoder_proj = scaled_linear(decoder_dim, joiner_dim, initial_scale=0.25)
        self.output_linear = nn.Linear(joiner_dim, vocab_size)

    def forward(self, encoder_out: torch.Tensor, decoder_out: torch.Tensor,
                project_input: bool = True) -> torch.Tensor:
        """encoder_out (..., encoder_dim), decoder_out (..., decoder_dim), broadcast over the
        leading dims, e.g. (B, T, 1, C) with (B, 1, U, C) -> (B, T, U, vocab). With
        project_input=False both are already projected to joiner_dim (pruned RNN-T)."""
        if project_input:
            encoder_out = self.encoder_proj(encoder_out)
            decoder_out = self.decoder_proj(decoder_out)
        elif encoder_out.size(-1) != self.output_linear.in_features or \
                decoder_out.size(-1) != self.output_linear.in_features:
            raise ValueError(f"with project_input=False both inputs must have joiner_dim="
                             f"{self.output_linear.in_features} channels, got {encoder_out.size(-1)} "
                             f"and {decoder_out.size(-1)}")
        return self.output_linear(torch.tanh(encoder_out + decoder_out))
