"""The Conformer-style block of the "double Conformer-style blocks" ablation
(paper Table 5): each Zipformer block is replaced by two of these.

    x += FFN1(x);  x += SA(x, MHAW(x));  x += Conv(x);  x += FFN2(x);
    x = Bypass(block input, BiasNorm(x))

It is built from the same modules as the Zipformer block (MHAW + SA for
self-attention, the same convolution and feed-forward modules, both FFNs at the
stack's feed-forward dim) so that only the block structure changes; with
zipformer-m's dims the whole model has 73.87 M parameters (paper: 73.9 M).
"""
from __future__ import annotations

import torch
from torch import nn

from .attention_weights import MultiHeadAttentionWeights
from .bypass import make_bypass
from .convolution_module import ConvolutionModule
from .feed_forward import FeedForward
from .norm import create_norm
from .scheduled_float import FloatLike
from .self_attention import SelfAttention
from .zipformer_block import (BlockSwitches, apply_keep_mask, block_output_constraints,
                              module_skip_schedule, sequence_keep_mask)


class ConformerStyleBlock(nn.Module):
    """x (B, T, D), pos_emb (1, 2T-1, pos_dim), padding mask (B, T) -> (B, T, D)."""

    def __init__(self, embed_dim: int, pos_dim: int, num_heads: int, query_head_dim: int,
                 pos_head_dim: int, value_head_dim: int, feedforward_dim: int,
                 kernel_size: int, dropout: FloatLike = 0.0, *,
                 switches: BlockSwitches = BlockSwitches(), skip_rate: FloatLike = 0.0):
        super().__init__()
        s = self.switches = switches
        d = embed_dim
        self.attention_skip_rate = module_skip_schedule()
        self.conv_skip_rate = module_skip_schedule()
        self.feed_forward1 = FeedForward(d, feedforward_dim, dropout,
                                         activation=s.activation, balancer=s.balancer, whitener=s.whitener)
        self.self_attn_weights = MultiHeadAttentionWeights(d, pos_dim, num_heads, query_head_dim,
                                                           pos_head_dim, balancer=s.balancer,
                                                           whitener=s.whitener)
        self.self_attn = SelfAttention(d, num_heads, value_head_dim, whitener=s.whitener)
        self.conv_module = ConvolutionModule(d, kernel_size,
                                             activation=s.activation, balancer=s.balancer, whitener=s.whitener)
        self.feed_forward2 = FeedForward(d, feedforward_dim, dropout,
                                         activation=s.activation, balancer=s.balancer, whitener=s.whitener)
        self.module_norms = nn.ModuleDict(
            {n: create_norm(s.norm, d) for n in ("ff1", "sa", "conv", "ff2")}
            if s.norm_on_every_module else {})
        self.balancer1, self.balancer2, self.whiten = block_output_constraints(d, s)
        self.norm = create_norm(s.norm, d)
        self.bypass = make_bypass(d, enabled=s.bypass, skip_rate=skip_rate)

    def _norm(self, name: str, y: torch.Tensor) -> torch.Tensor:
        return self.module_norms[name](y) if name in self.module_norms else y

    def forward(self, x: torch.Tensor, pos_emb: torch.Tensor,
                padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        orig = x
        x = x + self._norm("ff1", self.feed_forward1(x))
        keep = sequence_keep_mask(x, float(self.attention_skip_rate), self.training)
        weights = self.self_attn_weights(x, pos_emb, padding_mask)
        x = x + apply_keep_mask(keep, self._norm("sa", self.self_attn(x, weights)))
        keep = sequence_keep_mask(x, float(self.conv_skip_rate), self.training)
        x = x + apply_keep_mask(keep, self._norm("conv", self.conv_module(x, padding_mask)))
        x = x + self._norm("ff2", self.feed_forward2(x))
        x = self.bypass(orig, self.norm(self.balancer1(x)))
        return self.whiten(self.balancer2(x))
