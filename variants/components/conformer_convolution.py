"""The Conformer convolution module (original, non-reworked form).

pointwise Conv1d (d -> 2d) + GLU, depthwise Conv1d (kernel k, 'same' padding),
norm (LayerNorm in the authors' reproduction, not BatchNorm), activation
(Swish), pointwise Conv1d (d -> d). Padded frames are zeroed before the
depthwise convolution so that they cannot leak into valid frames.
"""
from __future__ import annotations

import torch
from torch import nn

from .activation import create_activation
from .norm import create_norm


class ConformerConvolution(nn.Module):
    """x (B, T, d), padding_mask (B, T) True at padding -> (B, T, d)."""

    def __init__(self, channels: int, kernel_size: int, norm: str = "layer_norm",
                 activation: str = "swish", bias: bool = True) -> None:
        super().__init__()
        if kernel_size % 2 == 0 or kernel_size < 1:
            raise ValueError(f"kernel_size={kernel_size} must be a positive odd number")
        self.channels = channels
        self.pointwise_conv1 = nn.Conv1d(channels, 2 * channels, kernel_size=1, bias=bias)
        self.depthwise_conv = nn.Conv1d(channels, channels, kernel_size, padding=(kernel_size - 1) // 2,
                                        groups=channels, bias=bias)
        self.norm = create_norm(norm, channels)
        self.activation = create_activation(activation, "convolution")
        self.pointwise_conv2 = nn.Conv1d(channels, channels, kernel_size=1, bias=bias)

    def forward(self, x: torch.Tensor, padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        if x.ndim != 3 or x.size(2) != self.channels:
            raise ValueError(f"ConformerConvolution expects (batch, frames, {self.channels}), got {tuple(x.shape)}")
        y = nn.functional.glu(self.pointwise_conv1(x.transpose(1, 2)), dim=1)  # (B, d, T)
        if padding_mask is not None:
            y = y.masked_fill(padding_mask.unsqueeze(1), 0.0)
        y = self.depthwise_conv(y).transpose(1, 2)  # (B, T, d): the norm works on the last dim
        y = self.activation(self.norm(y))
        return self.pointwise_conv2(y.transpose(1, 2)).transpose(1, 2)
