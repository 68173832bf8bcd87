"""The authors' original (non-reworked) Conformer behind the paper's Table 2
Conformer rows (icefall ``transducer_stateless/conformer.py``).

``build(cfg)`` returns ``(encoder_embed, encoder)``:

- ``encoder_embed``: :class:`Conv2dSubsampling` to 1/4 of the frame rate
  (3000 input frames -> 749).
- ``encoder``: :class:`ConformerEncoder` = relative positional encoding, then
  ``num_encoder_layers`` :class:`ConformerEncoderLayer` s, then a final norm.

Each layer: x + 1/2 FF(norm(x)); + MHSA_rel(norm(x)); + Conv(norm(x));
+ 1/2 FF(norm(x)); then a final norm. The norm is LayerNorm (``norm`` switch:
BiasNorm), the activation Swish (``activation`` switch: Swoosh). The
front end keeps its ReLUs: the activation switch replaces the Conformer's
Swish, not the subsampling front end.

Unlike the authors' ``Conformer`` module, the encoder has no final
``Linear(d_model, vocab_size)`` output layer: in the harness's heads that role
is played by the joiner's ``encoder_proj`` (and the CTC / simple-loss
projections), so the encoder outputs ``d_model`` channels. The authors'
"encoder" parameter count is therefore ours plus ``d_model * 500 + 500``.
"""
from __future__ import annotations

import torch
from torch import nn

from ..components.conformer_convolution import ConformerConvolution
from ..components.conv2d_subsampling import Conv2dSubsampling
from ..components.dropout import Dropout
from ..components.macaron_feed_forward import MacaronFeedForward
from ..components.norm import create_norm
from ..components.padding_mask import padding_mask as make_padding_mask
from ..components.rel_pos_multihead_attention import RelPositionMultiheadAttention
from ..components.rel_sinusoidal_positional_encoding import RelSinusoidalPositionalEncoding
from ..spec import ConformerConfig


class ConformerEncoderLayer(nn.Module):
    """One Conformer block (pre-norm, macaron feed-forward, final norm)."""

    #: weight of each feed-forward module's residual (macaron half-step)
    ff_scale = 0.5

    def __init__(self, d_model: int, nhead: int, dim_feedforward: int, cnn_module_kernel: int,
                 dropout: float = 0.1, norm: str = "layer_norm", activation: str = "swish") -> None:
        super().__init__()
        self.feed_forward_macaron = MacaronFeedForward(d_model, dim_feedforward, dropout, activation)
        self.self_attn = RelPositionMultiheadAttention(d_model, nhead, dropout=0.0)
        self.conv_module = ConformerConvolution(d_model, cnn_module_kernel, norm=norm, activation=activation)
        self.feed_forward = MacaronFeedForward(d_model, dim_feedforward, dropout, activation)
        self.norm_ff_macaron = create_norm(norm, d_model)
        self.norm_mha = create_norm(norm, d_model)
        self.norm_conv = create_norm(norm, d_model)
        self.norm_ff = create_norm(norm, d_model)
        self.norm_final = create_norm(norm, d_model)
        self.dropout = Dropout(dropout)

    def forward(self, x: torch.Tensor, pos_emb: torch.Tensor,
                padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, T, d); pos_emb (1, 2T - 1, d); padding_mask (B, T) True at padding."""
        x = x + self.ff_scale * self.dropout(self.feed_forward_macaron(self.norm_ff_macaron(x)))
        x = x + self.dropout(self.self_attn(self.norm_mha(x), pos_emb, key_padding_mask=padding_mask))
        x = x + self.dropout(self.conv_module(self.norm_conv(x), padding_mask=padding_mask))
        x = x + self.ff_scale * self.dropout(self.feed_forward(self.norm_ff(x)))
        return self.norm_final(x)


class ConformerEncoder(nn.Module):
    """(B, T, d) subsampled features, lengths -> (B, T, d) encodings, lengths."""

    def __init__(self, cfg: ConformerConfig) -> None:
        super().__init__()
        self.d_model = cfg.d_model
        self.encoder_pos = RelSinusoidalPositionalEncoding(cfg.d_model, cfg.dropout)
        self.layers = nn.ModuleList([
            ConformerEncoderLayer(cfg.d_model, cfg.nhead, cfg.dim_feedforward, cfg.cnn_module_kernel,
                                  cfg.dropout, norm=cfg.norm, activation=cfg.activation)
            for _ in range(cfg.num_encoder_layers)
        ])
        self.after_norm = create_norm(cfg.norm, cfg.d_model)

    def forward(self, x: torch.Tensor, x_lens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if x.ndim != 3 or x.size(2) != self.d_model:
            raise ValueError(f"ConformerEncoder expects (batch, frames, {self.d_model}), got {tuple(x.shape)}")
        if x_lens.shape != (x.size(0),):
            raise ValueError(f"x_lens must have shape ({x.size(0)},), got {tuple(x_lens.shape)}")
        padding_mask = make_padding_mask(x_lens, x.size(1))
        x, pos_emb = self.encoder_pos(x)
        for layer in self.layers:
            x = layer(x, pos_emb, padding_mask)
        return self.after_norm(x), x_lens


def build(cfg: ConformerConfig) -> tuple[nn.Module, nn.Module]:
    """(encoder_embed, encoder) for a :class:`~variants.spec.ConformerConfig`."""
    if not isinstance(cfg, ConformerConfig):
        raise TypeError(f"conformer.build needs a ConformerConfig, got {type(cfg).__name__}")
    return Conv2dSubsampling(cfg.num_features, cfg.d_model), ConformerEncoder(cfg)
