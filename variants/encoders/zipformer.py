"""The Zipformer encoder (paper section 3.1, Figure 1), assembled from
``variants.components`` according to a :class:`~variants.spec.ZipformerConfig`.

    encoder_embed: Conv-Embed, (B, T, 80) at 100 Hz -> (B, (T-7)//2, encoder_dim[0]) at 50 Hz
    encoder:       six stacks at 50, 25, 12.5, 6.25, 12.5, 25 Hz (factors 1,2,4,8,4,2);
                   between stacks the channels are truncated or zero-padded to the
                   next stack's dim; the output takes each channel from the most
                   recent stack that has it; a final Downsample by 2 gives 25 Hz:
                   (B, T1, D0) -> (B, (T1+1)//2, max(encoder_dim)).

So for T input frames the output has ((T - 7) // 2 + 1) // 2 frames (748 for
3000). In training, each stack also zeroes the channels above
``encoder_unmasked_dim`` for a random 12.5 % (upper half: about 23 %) of the
sequences (the authors' feature masks). ``cfg.dropout`` is the final rate of
the authors' dropout schedule (0.3 at first, ``cfg.dropout`` from 20k batches),
used in the feed-forward modules and after Conv-Embed.

Padding: Conv-Embed zeroes padded frames before its convolutions and before
ConvNeXt, attention masks padded keys, convolution modules zero padded frames,
and Downsample completes a group from the utterance's own last frame, so an
utterance's output does not depend on what the padding holds or on the other
utterances of the batch (it equals the authors' output for it alone; their
Conv-Embed and Downsample do see the padding). Measured for Zipformer-S, an
8 s utterance alone vs padded to 10 s (with 0 or -23) vs batched with a 10 s
one: at most 1.9e-6 apart in float32 (rounding; outputs up to 7.6), 3.6e-15
in float64, and identical between padding values
(tests/variants/encoders/test_padding_independence.py).
"""
from __future__ import annotations

import torch
from torch import nn

from ..components.conformer_style_block import ConformerStyleBlock
from ..components.conv_embed import ConvEmbed
from ..components.downsample import Downsample
from ..components.downsampled_stack import DownsampledStack
from ..components.padding_mask import padding_mask
from ..components.scheduled_float import dropout_schedule
from ..components.zipformer_block import BlockSwitches, ZipformerBlock
from ..components.zipformer_stack import ZipformerStack
from ..spec import ZipformerConfig

#: batches over which the stacks warm up in turn (authors' warmup_batches)
WARMUP_BATCHES = 4000.0
#: probability of masking the channels above encoder_unmasked_dim (per sequence)
FEATURE_MASK_DROPOUT = 0.125


def convert_num_channels(x: torch.Tensor, num_channels: int) -> torch.Tensor:
    """Truncate or zero-pad the last axis to ``num_channels`` (between stacks)."""
    if num_channels <= x.shape[-1]:
        return x[..., :num_channels]
    pad = x.new_zeros(*x.shape[:-1], num_channels - x.shape[-1])
    return torch.cat((x, pad), dim=-1)


def combine_outputs(outputs: list[torch.Tensor], dims: tuple[int, ...]) -> torch.Tensor:
    """Full-dim output: each channel from the most recent stack output that has it."""
    pieces = [outputs[-1]]
    cur = dims[-1]
    for out, d in zip(reversed(outputs[:-1]), reversed(dims[:-1])):
        if d > cur:
            pieces.append(out[..., cur:d])
            cur = d
    return torch.cat(pieces, dim=-1) if len(pieces) > 1 else pieces[0]


def encoder_output_lengths(lengths: torch.Tensor, cfg: ZipformerConfig) -> torch.Tensor:
    """Frames at the encoder output for ``lengths`` Conv-Embed output frames."""
    f = cfg.output_downsampling_factor
    return (lengths + f - 1) // f


class ZipformerEncoder(nn.Module):
    """The stacks, the output combination and the final Downsample."""

    def __init__(self, cfg: ZipformerConfig):
        super().__init__()
        if cfg.causal:
            raise NotImplementedError("causal (streaming) Zipformer is not supported; set causal=False")
        self.cfg = cfg
        self.encoder_dim = tuple(cfg.encoder_dim)
        self.encoder_unmasked_dim = tuple(cfg.encoder_unmasked_dim)
        switches = BlockSwitches.from_config(cfg)
        dropout = dropout_schedule(cfg.dropout)
        n = len(cfg.downsampling_factor)
        stacks = []
        for i in range(n):
            ds = cfg.downsampling_factor[i]
            if cfg.block_style == "zipformer":
                block_cls, num_blocks = ZipformerBlock, cfg.num_encoder_layers[i]
            else:
                block_cls, num_blocks = ConformerStyleBlock, 2 * cfg.num_encoder_layers[i]
            blocks = [block_cls(cfg.encoder_dim[i], cfg.pos_dim, cfg.num_heads[i], cfg.query_head_dim,
                                cfg.pos_head_dim, cfg.value_head_dim, cfg.feedforward_dim[i],
                                cfg.cnn_module_kernel[i], dropout, switches=switches)
                      for _ in range(num_blocks)]
            stack = ZipformerStack(blocks, cfg.pos_dim,
                                   warmup_begin=WARMUP_BATCHES * (i + 1) / (n + 1),
                                   warmup_end=WARMUP_BATCHES * (i + 2) / (n + 1),
                                   final_skip_rate=0.035 * ds ** 0.5)
            if ds != 1:
                stack = DownsampledStack(stack, cfg.encoder_dim[i], ds, bypass=cfg.bypass)
            stacks.append(stack)
        self.encoders = nn.ModuleList(stacks)
        self.downsample_output = Downsample(cfg.output_downsampling_factor)

    def feature_masks(self, x: torch.Tensor) -> list[torch.Tensor | float]:
        """Per-stack (B, 1, D) masks in training, 1.0 in eval (authors' scheme)."""
        if not self.training:
            return [1.0] * len(self.encoder_dim)
        b = x.shape[0]
        keep1 = (torch.rand(b, 1, 1, device=x.device) > FEATURE_MASK_DROPOUT).to(x.dtype)
        keep2 = keep1 * (torch.rand(b, 1, 1, device=x.device) > FEATURE_MASK_DROPOUT).to(x.dtype)
        masks: list[torch.Tensor | float] = []
        for d, u1 in zip(self.encoder_dim, self.encoder_unmasked_dim):
            u2 = u1 + (d - u1) // 2
            m = torch.ones(b, 1, d, dtype=x.dtype, device=x.device)
            m[..., u1:u2] = m[..., u1:u2] * keep1
            m[..., u2:] = m[..., u2:] * keep2
            masks.append(m)
        return masks

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if x.ndim != 3 or x.shape[-1] != self.encoder_dim[0]:
            raise ValueError(f"Zipformer encoder expects (batch, frames, {self.encoder_dim[0]}), "
                             f"got shape {tuple(x.shape)}")
        if lengths.shape != (x.shape[0],):
            raise ValueError(f"lengths must have shape ({x.shape[0]},), got {tuple(lengths.shape)}")
        lengths = lengths.to(x.device)
        # padded frames start at zero, so even inf/NaN padding cannot reach valid
        # frames through a zero attention weight (0 * inf = NaN)
        pad = padding_mask(lengths, x.shape[1])
        x = x.masked_fill(pad.unsqueeze(-1), 0.0)
        masks = self.feature_masks(x)
        outputs = []
        for stack, dim, mask in zip(self.encoders, self.encoder_dim, masks):
            x = stack(convert_num_channels(x, dim), lengths, mask)
            outputs.append(x)
        x = combine_outputs(outputs, self.encoder_dim)
        x, out_lens = self.downsample_output(x, lengths)
        return x, out_lens


def build(cfg: ZipformerConfig) -> tuple[nn.Module, nn.Module]:
    """(encoder_embed, encoder) for ``cfg``: see the module docstring for shapes (a causal
    ``cfg`` is refused by :class:`ZipformerEncoder`)."""
    embed = ConvEmbed(cfg.num_features, cfg.encoder_dim[0], time_stride=cfg.embed_time_stride,
                      dropout=dropout_schedule(cfg.dropout), norm=cfg.norm,
                      activation=cfg.activation, balancer=cfg.balancer, whitener=cfg.whitener,
                      channels=tuple(cfg.embed_channels))
    return embed, ZipformerEncoder(cfg)
