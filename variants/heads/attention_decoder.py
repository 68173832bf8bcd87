"""Attention-based decoder (AED) head of the authors' zipformer recipe, used
with CTC for the paper's CTC/AED rows.

A pre-norm Transformer decoder: token embedding, absolute sinusoidal position
encoding (input scaled by sqrt(d_model)), ``num_layers`` layers of causal
self-attention, cross-attention to the encoder output (keys and values
projected from ``memory_dim``) and a Swish feed-forward, each with LayerNorm
before it and a residual around it; then a Linear to the vocabulary (no final
norm). ``sos_id == eos_id`` (one ``<sos/eos>`` symbol), by default
``vocab_size - 1`` (the harness's contract; the authors' recipe takes the BPE
model's ``<sos/eos>`` id, which their BPE layout puts at 1: pass ``sos_id`` /
``eos_id`` to match a tokenizer), and ``ignore_id == -1``. Attention scores whose
magnitude exceeds 50 get a small gradient penalty during training.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

from ..components.attention_weights import PenalizeAbsValuesGt
from ..components.dropout import Dropout, dropout
from ..components.padding_mask import padding_mask
from ..components.swoosh import Swish

#: attention scores above this magnitude are penalised in training (authors' limit and penalty)
SCORE_LIMIT = 50.0
SCORE_PENALTY = 1.0e-4


def sinusoidal_positions(length: int, d_model: int, device: torch.device | None = None) -> torch.Tensor:
    """(length, d_model) absolute encodings [sin(p w_0), cos(p w_0), ...], w_i = 10000^(-2i/d)."""
    pos = torch.arange(length, dtype=torch.float32, device=device).unsqueeze(1)
    angles = pos * torch.exp(torch.arange(0, d_model, 2, dtype=torch.float32, device=device)
                             * (-math.log(10000.0) / d_model))
    pe = torch.zeros(length, d_model, dtype=torch.float32, device=device)
    pe[:, 0::2] = torch.sin(angles)
    pe[:, 1::2] = torch.cos(angles[:, : d_model // 2])
    return pe


class PositionalEncoding(nn.Module):
    """x (B, U, d) -> dropout(x * sqrt(d) + PE[:U])."""

    def __init__(self, d_model: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.d_model = d_model
        self.xscale = math.sqrt(d_model)
        self.dropout = Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pe = sinusoidal_positions(x.size(1), self.d_model, x.device).to(x.dtype)
        return self.dropout(x * self.xscale + pe)


class MultiHeadAttention(nn.Module):
    """Scaled dot-product multi-head attention with separate q/k/v projections.

    query (B, U, embed_dim), key/value (B, S, kv_dim), mask (B, U or 1, S) True
    where attention is not allowed -> (B, U, embed_dim).
    """

    def __init__(self, embed_dim: int, num_heads: int, kv_dim: int | None = None,
                 dropout: float = 0.0) -> None:
        super().__init__()
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim={embed_dim} is not divisible by num_heads={num_heads}")
        kv_dim = embed_dim if kv_dim is None else kv_dim
        self.num_heads = num_heads
        self.head_dim = embed_dim // num_heads
        self.dropout = dropout
        self.linear_q = nn.Linear(embed_dim, embed_dim)
        self.linear_k = nn.Linear(kv_dim, embed_dim)
        self.linear_v = nn.Linear(kv_dim, embed_dim)
        self.out_proj = nn.Linear(embed_dim, embed_dim)

    def forward(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        b, u, _ = query.shape
        s = key.size(1)
        h, dh = self.num_heads, self.head_dim
        q = self.linear_q(query).view(b, u, h, dh).transpose(1, 2)       # (B, H, U, dh)
        k = self.linear_k(key).view(b, s, h, dh).permute(0, 2, 3, 1)      # (B, H, dh, S)
        v = self.linear_v(value).view(b, s, h, dh).transpose(1, 2)       # (B, H, S, dh)
        scores = torch.matmul(q, k) / math.sqrt(dh)
        if self.training and scores.requires_grad:
            scores = PenalizeAbsValuesGt.apply(scores, SCORE_LIMIT, SCORE_PENALTY)
        if mask is not None:
            scores = scores.masked_fill(mask.unsqueeze(1), float("-inf"))
        weights = nn.functional.softmax(scores, dim=-1)
        weights = dropout(weights, self.dropout, self.training)
        out = torch.matmul(weights.to(v.dtype), v)                       # (B, H, U, dh)
        return self.out_proj(out.transpose(1, 2).reshape(b, u, h * dh))


class AttentionDecoderLayer(nn.Module):
    """Pre-norm: causal self-attention, cross-attention to memory, Swish feed-forward."""

    def __init__(self, d_model: int, nhead: int, dim_feedforward: int, memory_dim: int,
                 dropout: float = 0.1) -> None:
        super().__init__()
        self.norm_self_attn = nn.LayerNorm(d_model)
        self.self_attn = MultiHeadAttention(d_model, nhead)
        self.norm_src_attn = nn.LayerNorm(d_model)
        self.src_attn = MultiHeadAttention(d_model, nhead, kv_dim=memory_dim)
        self.norm_ff = nn.LayerNorm(d_model)
        self.feed_forward = nn.Sequential(
            nn.Linear(d_model, dim_feedforward), Swish(), Dropout(dropout),
            nn.Linear(dim_feedforward, d_model))
        self.dropout = Dropout(dropout)

    def forward(self, x: torch.Tensor, self_mask: torch.Tensor, memory: torch.Tensor,
                memory_mask: torch.Tensor) -> torch.Tensor:
        y = self.norm_self_attn(x)
        x = x + self.dropout(self.self_attn(y, y, y, self_mask))
        x = x + self.dropout(self.src_attn(self.norm_src_attn(x), memory, memory, memory_mask))
        return x + self.dropout(self.feed_forward(self.norm_ff(x)))


class AttentionDecoder(nn.Module):
    """memory (B, T, memory_dim), memory_lens (B,), tokens_in (B, U) -> logits (B, U, vocab_size)."""

    def __init__(self, vocab_size: int, d_model: int = 512, num_layers: int = 6, nhead: int = 8,
                 dim_feedforward: int = 2048, memory_dim: int = 512, dropout: float = 0.1,
                 sos_id: int | None = None, eos_id: int | None = None) -> None:
        super().__init__()
        for name, v in (("vocab_size", vocab_size - 1), ("d_model", d_model), ("num_layers", num_layers),
                        ("nhead", nhead), ("dim_feedforward", dim_feedforward), ("memory_dim", memory_dim)):
            if v <= 0:
                raise ValueError(f"AttentionDecoder: {name} must be positive"
                                 f"{' and > 1' if name == 'vocab_size' else ''}")
        if d_model % nhead:
            raise ValueError(f"AttentionDecoder: d_model={d_model} is not divisible by nhead={nhead}")
        self.vocab_size = vocab_size
        self.memory_dim = memory_dim
        self.sos_id = vocab_size - 1 if sos_id is None else int(sos_id)
        self.eos_id = vocab_size - 1 if eos_id is None else int(eos_id)
        for name, v in (("sos_id", self.sos_id), ("eos_id", self.eos_id)):
            if not 0 <= v < vocab_size:
                raise ValueError(f"AttentionDecoder: {name}={v} must lie in [0, {vocab_size})")
        self.ignore_id = -1
        self.embed = nn.Embedding(vocab_size, d_model)
        self.pos = PositionalEncoding(d_model, dropout=0.1)
        self.layers = nn.ModuleList([
            AttentionDecoderLayer(d_model, nhead, dim_feedforward, memory_dim, dropout)
            for _ in range(num_layers)])
        self.output_layer = nn.Linear(d_model, vocab_size)

    def make_inputs_and_targets(self, token_ids: Sequence[Sequence[int]],
                                device: torch.device | str | None = None
                                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Teacher-forcing tensors for label sequences, as in the authors' recipe:
        tokens_in = [sos, y...] padded with eos, tokens_in_lens = len(y) + 1,
        targets = [y..., eos] padded with ignore_id."""
        if len(token_ids) == 0:
            raise ValueError("token_ids is empty: need at least one label sequence")
        for seq in token_ids:
            for t in seq:
                if not 0 <= int(t) < self.vocab_size:
                    raise ValueError(f"token id {t} outside [0, {self.vocab_size})")
        u = max(len(s) for s in token_ids) + 1
        tokens_in = torch.full((len(token_ids), u), self.eos_id, dtype=torch.long)
        targets = torch.full((len(token_ids), u), self.ignore_id, dtype=torch.long)
        for i, seq in enumerate(token_ids):
            seq_t = torch.as_tensor(list(seq), dtype=torch.long)
            tokens_in[i, 0] = self.sos_id
            tokens_in[i, 1: len(seq) + 1] = seq_t
            targets[i, : len(seq)] = seq_t
            targets[i, len(seq)] = self.eos_id
        lens = torch.tensor([len(s) + 1 for s in token_ids], dtype=torch.long)
        return tokens_in.to(device), lens.to(device), targets.to(device)

    def forward(self, memory: torch.Tensor, memory_lens: torch.Tensor, tokens_in: torch.Tensor,
                tokens_in_lens: torch.Tensor | None = None) -> torch.Tensor:
        if memory.ndim != 3 or memory.size(2) != self.memory_dim:
            raise ValueError(f"memory must have shape (batch, frames, {self.memory_dim}), got {tuple(memory.shape)}")
        b, t = memory.shape[:2]
        if tokens_in.ndim != 2 or tokens_in.size(0) != b:
            raise ValueError(f"tokens_in must have shape ({b}, tokens), got {tuple(tokens_in.shape)}")
        if tokens_in.dtype.is_floating_point or tokens_in.dtype == torch.bool:
            raise TypeError(f"tokens_in must hold integer token ids, got {tokens_in.dtype}")
        if memory_lens.shape != (b,):
            raise ValueError(f"memory_lens must have shape ({b},), got {tuple(memory_lens.shape)}")
        if tokens_in.numel() and not 0 <= int(tokens_in.min()) <= int(tokens_in.max()) < self.vocab_size:
            raise ValueError(f"tokens_in must hold ids in [0, {self.vocab_size}), got "
                             f"[{int(tokens_in.min())}, {int(tokens_in.max())}]")
        u = tokens_in.size(1)
        device = memory.device
        positions = torch.arange(u, device=device)
        self_mask = (positions.unsqueeze(1) < positions.unsqueeze(0)).unsqueeze(0)  # (1, U, U) future keys
        if tokens_in_lens is not None:
            if tokens_in_lens.shape != (b,):
                raise ValueError(f"tokens_in_lens must have shape ({b},), got {tuple(tokens_in_lens.shape)}")
            self_mask = self_mask | padding_mask(tokens_in_lens, u).unsqueeze(1)
        memory_mask = padding_mask(memory_lens, t).unsqueeze(1)

        x = self.pos(self.embed(tokens_in.long()))
        for layer in self.layers:
            x = layer(x, self_mask, memory, memory_mask)
        return self.output_layer(x)
