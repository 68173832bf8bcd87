"""The Conformer convolution module (original, non-reworked form).

pointwise Conv1d (d -> 2d) + GLU, depthwise Conv1d (kernel k, 'same' padding),
norm (LayerNorm in the authors' reproduction, not BatchNorm), activation
(Swish), pointwise Conv1d (d -> d). Padded frames are zeroed before the
depthwise convolution so that they cannot leak into valid frames.
"""
from __future__ import annotations

import torch
from torch import nn

from .. import fast_paths
from .activation import create_activation
from .convolution_module import depthwise_conv_channels_last
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
        if fast_paths.cpu_layout(x) and self.depthwise_conv.padding_mode == "zeros":
            return self._forward_time_major(x, padding_mask)
        y = nn.functional.glu(self.pointwise_conv1(x.transpose(1, 2)), dim=1)  # (B, d, T)
        if padding_mask is not None:
            y = y.masked_fill(padding_mask.unsqueeze(1), 0.0)
        y = self.depthwise_conv(y).transpose(1, 2)  # (B, T, d): the norm works on the last dim
        y = self.activation(self.norm(y))
        return self.pointwise_conv2(y.transpose(1, 2)).transpose(1, 2)

    def _forward_time_major(self, x: torch.Tensor, padding_mask: torch.Tensor | None) -> torch.Tensor:
        """The same module on the CPU with every activation held as (B, T, d) in memory: the
        point-wise convolutions as matrix products (torch runs a kernel-1 Conv1d on a
        transposed input through its slow im2col path), the depth-wise one channels-last
        (C loops where they apply: :func:`convolution_module.depthwise_conv_channels_last`).
        Within float rounding of the convolutions (sums in another order); a CPU layout path
        (:mod:`variants.fast_paths`)."""
        c1, c2 = self.pointwise_conv1, self.pointwise_conv2
        y = nn.functional.glu(nn.functional.linear(x, c1.weight.squeeze(-1), c1.bias), dim=-1)
        if padding_mask is not None:
            y = y.masked_fill(padding_mask.unsqueeze(-1), 0.0)
        y = depthwise_conv_channels_last(self.depthwise_conv, y.transpose(1, 2)).transpose(1, 2)
        y = self.activation(self.norm(y))
        return nn.functional.linear(y, c2.weight.squeeze(-1), c2.bias)
