"""The Zipformer block (paper section 3.2, Figure 2 left).

    MHAW computes attention weights once from the block input;
    x += FFN1(x);  x += NLA(x, w);  x += SA1(x, w);  x += Conv1(x);  x += FFN2(x);
    x = Bypass_mid(block input, x);
    x += SA2(x, w);  x += Conv2(x);  x += FFN3(x);
    x = Bypass(block input, BiasNorm(x))

FFN hidden dims are 3/4, 1 and 5/4 of the stack's feed-forward dim, NLA's 3/4
of the embedding dim. Training-only parts follow the authors' schedules
(per-sequence skipping of the attention, convolution and FFN2/FFN3 modules;
occasionally constant attention weights for NLA; Balancers and a Whitener on
the block's output). Switches: ``nla``, ``share_attention_weights`` (False: SA2
gets weights from its own MHAW), ``bypass``, ``balancer``, ``whitener``,
``norm`` and ``norm_on_every_module`` (a norm on each module's output, which
the paper needs for training with Adam).
"""
from __future__ import annotations

import random
from dataclasses import dataclass, fields
from typing import Any

import torch
from torch import nn

from ..spec import ZipformerConfig
from .attention_weights import MultiHeadAttentionWeights, whitening_limit_schedule
from .balancer import make_balancer
from .bypass import make_bypass
from .convolution_module import ConvolutionModule
from .feed_forward import FeedForward
from .nonlinear_attention import NonlinearAttention
from .norm import create_norm
from .scheduled_float import FloatLike, ScheduledFloat, fill_decision, rate_value
from .self_attention import SelfAttention
from .whitener import make_whitener


def _spec_default(name: str) -> Any:
    """``ZipformerConfig``'s default of the switch ``name`` (the one place it is written)."""
    return ZipformerConfig.model_fields[name].default


#: the authors' never-used per-block vector, held as a buffer (see ZipformerBlock)
UNUSED_BYPASS_SCALE = "unused_bypass_scale"


@dataclass(frozen=True)
class BlockSwitches:
    """The ablation switches a block reads: the ZipformerConfig fields of the same names,
    with its defaults."""

    norm: str = _spec_default("norm")
    activation: str = _spec_default("activation")
    nla: bool = _spec_default("nla")
    share_attention_weights: bool = _spec_default("share_attention_weights")
    bypass: bool = _spec_default("bypass")
    balancer: bool = _spec_default("balancer")
    whitener: bool = _spec_default("whitener")
    norm_on_every_module: bool = _spec_default("norm_on_every_module")

    @classmethod
    def from_config(cls, cfg: Any) -> "BlockSwitches":
        """The switches of a ``ZipformerConfig`` (every field of this class, read by name)."""
        return cls(**{f.name: getattr(cfg, f.name) for f in fields(cls)})


def module_skip_schedule() -> ScheduledFloat:
    """Authors' per-sequence skip rate of attention and convolution modules."""
    return ScheduledFloat((0.0, 0.2), (4000.0, 0.05), (16000.0, 0.0), default=0.0)


def ffn_skip_schedule() -> ScheduledFloat:
    """Authors' per-sequence skip rate of FFN2 and FFN3."""
    return ScheduledFloat((0.0, 0.1), (4000.0, 0.01), (50000.0, 0.0), default=0.0)


def sequence_keep_mask(x: torch.Tensor, rate: float | torch.Tensor,
                       training: bool) -> torch.Tensor | None:
    """(B, 1, 1) 0/1 mask dropping whole sequences with probability ``rate``; None if nothing to drop
    (a drawn 0-dim tensor ``rate``, see scheduled_float.py: always a mask)."""
    if not training or (not isinstance(rate, torch.Tensor) and rate == 0.0):
        return None
    return (torch.rand(x.shape[0], 1, 1, device=x.device) > rate).to(x.dtype)


def apply_keep_mask(mask: torch.Tensor | None, y: torch.Tensor) -> torch.Tensor:
    """``y`` with the sequences ``mask`` drops zeroed (``y`` itself when nothing is dropped)."""
    return y if mask is None else y * mask


def block_output_constraints(dim: int, s: BlockSwitches) -> tuple[nn.Module, nn.Module, nn.Module]:
    """Balancer before the final norm, Balancer and Whitener after the final Bypass."""
    before = make_balancer(dim, enabled=s.balancer, channel_dim=-1, min_positive=0.45,
                           max_positive=0.55, min_abs=0.2, max_abs=4.0)
    after = make_balancer(dim, enabled=s.balancer, channel_dim=-1, min_positive=0.45,
                          max_positive=0.55, min_abs=0.1, max_abs=4.0)
    whiten = make_whitener(enabled=s.whitener, num_groups=1,
                           whitening_limit=whitening_limit_schedule(4.0, ratio=3.0),
                           prob=(0.025, 0.25), grad_scale=0.01)
    return before, after, whiten


class ZipformerBlock(nn.Module):
    """x (B, T, D), pos_emb (1, 2T-1, pos_dim), padding mask (B, T) -> (B, T, D)."""

    def __init__(self, embed_dim: int, pos_dim: int, num_heads: int, query_head_dim: int,
                 pos_head_dim: int, value_head_dim: int, feedforward_dim: int,
                 kernel_size: int, dropout: FloatLike = 0.0, *,
                 switches: BlockSwitches = BlockSwitches(), skip_rate: FloatLike = 0.0):
        super().__init__()
        s = self.switches = switches
        d = embed_dim
        self.embed_dim = d

        def mhaw() -> MultiHeadAttentionWeights:
            return MultiHeadAttentionWeights(d, pos_dim, num_heads, query_head_dim, pos_head_dim,
                                             balancer=s.balancer, whitener=s.whitener)

        def ffn(hidden: int) -> FeedForward:
            return FeedForward(d, hidden, dropout,
                               activation=s.activation, balancer=s.balancer, whitener=s.whitener)

        def conv() -> ConvolutionModule:
            return ConvolutionModule(d, kernel_size,
                                     activation=s.activation, balancer=s.balancer, whitener=s.whitener)

        self.attention_skip_rate = module_skip_schedule()
        self.conv_skip_rate = module_skip_schedule()
        self.const_attention_rate = ScheduledFloat((0.0, 0.25), (4000.0, 0.025), default=0.0)
        self.ff2_skip_rate = ffn_skip_schedule()
        self.ff3_skip_rate = ffn_skip_schedule()

        self.self_attn_weights = mhaw()
        self.self_attn_weights2 = None if s.share_attention_weights else mhaw()
        self.feed_forward1 = ffn(feedforward_dim * 3 // 4)
        self.nonlinear_attention = (NonlinearAttention(d, 3 * d // 4, balancer=s.balancer,
                                                       whitener=s.whitener)
                                    if s.nla else None)
        self.self_attn1 = SelfAttention(d, num_heads, value_head_dim, whitener=s.whitener)
        self.conv_module1 = conv()
        self.feed_forward2 = ffn(feedforward_dim)
        self.self_attn2 = SelfAttention(d, num_heads, value_head_dim, whitener=s.whitener)
        self.conv_module2 = conv()
        self.feed_forward3 = ffn(feedforward_dim * 5 // 4)
        module_names = ["ff1", "nla", "sa1", "conv1", "ff2", "sa2", "conv2", "ff3"]
        self.module_norms = nn.ModuleDict(
            {n: create_norm(s.norm, d) for n in module_names if n != "nla" or s.nla}
            if s.norm_on_every_module else {})

        self.balancer_na = make_balancer(d, enabled=s.balancer, channel_dim=-1, min_positive=0.3,
                                         max_positive=0.7,
                                         min_abs=ScheduledFloat((0.0, 0.004), (4000.0, 0.02)),
                                         prob=0.05)
        self.balancer_ff2 = make_balancer(d, enabled=s.balancer, channel_dim=-1, min_positive=0.3,
                                          max_positive=0.7,
                                          min_abs=ScheduledFloat((0.0, 0.0), (4000.0, 0.1), default=0.0),
                                          max_abs=2.0, prob=0.05)
        self.balancer_ff3 = make_balancer(d, enabled=s.balancer, channel_dim=-1, min_positive=0.3,
                                          max_positive=0.7,
                                          min_abs=ScheduledFloat((0.0, 0.0), (4000.0, 0.2), default=0.0),
                                          max_abs=4.0, prob=0.05)
        self.balancer1, self.balancer2, self.whiten = block_output_constraints(d, s)
        self.norm = create_norm(s.norm, d)
        self.bypass_mid = make_bypass(d, enabled=s.bypass)
        self.bypass = make_bypass(d, enabled=s.bypass, skip_rate=skip_rate)
        # The authors' block holds one more channel-wise vector, a parameter that
        # its forward never uses (marked "TODO: remove it" there). Here it is a
        # persistent buffer: it never gets a gradient (so every parameter is
        # trained and DDP needs no find_unused_parameters), it stays in the
        # state_dict under the authors' name, and AsrModel.param_counts adds it
        # back so that counts equal theirs exactly (D per block).
        self.register_buffer(UNUSED_BYPASS_SCALE, torch.full((d,), 0.5))

    #: skip rates and the constant-attention draw from :meth:`decide` (see scheduled_float.py)
    predrawn = False
    _decision: torch.Tensor | None = None

    def decide(self, device: torch.device) -> None:
        """The step's constant-attention draw (the one the forward makes), as a 0/1 tensor."""
        if self.nonlinear_attention is not None:
            const = random.random() < float(self.const_attention_rate)
            self._decision = fill_decision(self._decision, [float(const)], device)

    def _rate(self, rate: FloatLike) -> float | torch.Tensor:
        return rate_value(rate, self.predrawn and self.training)

    def _norm(self, name: str, y: torch.Tensor) -> torch.Tensor:
        return self.module_norms[name](y) if name in self.module_norms else y

    def forward(self, x: torch.Tensor, pos_emb: torch.Tensor,
                padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        train = self.training
        orig = x
        weights = self.self_attn_weights(x, pos_emb, padding_mask)
        x = x + self._norm("ff1", self.feed_forward1(x))
        attn_keep = sequence_keep_mask(x, self._rate(self.attention_skip_rate), train)
        if self.nonlinear_attention is not None:
            w0 = weights[0:1]
            if train and self.predrawn:
                const = (w0 > 0.0).to(w0.dtype)
                w0 = torch.where(self._decision.bool(), const / const.sum(dim=-1, keepdim=True), w0)
            elif train and random.random() < float(self.const_attention_rate):
                # constant weights over the unmasked keys: pushes NLA towards averaging
                w0 = (w0 > 0.0).to(w0.dtype)
                w0 = w0 / w0.sum(dim=-1, keepdim=True)
            na = self.balancer_na(self._norm("nla", self.nonlinear_attention(x, w0)))
            x = x + apply_keep_mask(attn_keep, na)
        x = x + apply_keep_mask(attn_keep, self._norm("sa1", self.self_attn1(x, weights)))
        conv_keep = sequence_keep_mask(x, self._rate(self.conv_skip_rate), train)
        x = x + apply_keep_mask(conv_keep, self._norm("conv1", self.conv_module1(x, padding_mask)))
        ff2_keep = sequence_keep_mask(x, self._rate(self.ff2_skip_rate), train)
        x = x + apply_keep_mask(ff2_keep, self.balancer_ff2(self._norm("ff2", self.feed_forward2(x))))
        x = self.bypass_mid(orig, x)
        if self.self_attn_weights2 is not None:
            weights = self.self_attn_weights2(x, pos_emb, padding_mask)
        x = x + apply_keep_mask(attn_keep, self._norm("sa2", self.self_attn2(x, weights)))
        conv_keep = sequence_keep_mask(x, self._rate(self.conv_skip_rate), train)
        x = x + apply_keep_mask(conv_keep, self._norm("conv2", self.conv_module2(x, padding_mask)))
        ff3_keep = sequence_keep_mask(x, self._rate(self.ff3_skip_rate), train)
        x = x + apply_keep_mask(ff3_keep, self.balancer_ff3(self._norm("ff3", self.feed_forward3(x))))
        x = self.norm(self.balancer1(x))
        x = self.bypass(orig, x)
        return self.whiten(self.balancer2(x))
