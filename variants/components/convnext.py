"""The ConvNeXt layer of Conv-Embed (paper section 3.1): depth-wise 7x7
convolution, point-wise convolution to 3x the channels, SwooshL, point-wise
convolution back, with a residual connection. In training the residual branch
is dropped per utterance at a scheduled rate (authors: 0.2 falling to 0.015)."""
from __future__ import annotations

import torch
from torch import nn

from .. import fast_paths
from .activation import create_activation
from .balancer import make_balancer
from .scaled_linear import scaled_conv2d
from .scheduled_float import FloatLike, ScheduledFloat
from .whitener import make_whitener


class ConvNeXt(nn.Module):
    """x (B, C, T, F) -> same shape."""

    def __init__(self, channels: int, hidden_ratio: int = 3, kernel_size: tuple[int, int] = (7, 7), *,
                 activation: str = "swoosh", balancer: bool = True, whitener: bool = True,
                 layerdrop_rate: FloatLike | None = None):
        super().__init__()
        hidden = channels * hidden_ratio
        self.padding = ((kernel_size[0] - 1) // 2, (kernel_size[1] - 1) // 2)
        self.layerdrop_rate = (ScheduledFloat((0.0, 0.2), (20000.0, 0.015))
                               if layerdrop_rate is None else layerdrop_rate)
        self.depthwise_conv = nn.Conv2d(channels, channels, kernel_size, groups=channels,
                                        padding=self.padding)
        self.pointwise_conv1 = nn.Conv2d(channels, hidden, 1)
        self.hidden_balancer = make_balancer(hidden, enabled=balancer, channel_dim=1, min_positive=0.3,
                                             max_positive=1.0, min_abs=0.75, max_abs=5.0)
        self.activation = create_activation(activation, "convnext")
        self.pointwise_conv2 = scaled_conv2d(hidden, channels, 1, initial_scale=0.01)
        self.out_balancer = make_balancer(channels, enabled=balancer, channel_dim=1, min_positive=0.4,
                                          max_positive=0.6, min_abs=1.0, max_abs=6.0)
        self.out_whiten = make_whitener(enabled=whitener, num_groups=1, whitening_limit=5.0,
                                        prob=(0.025, 0.25), grad_scale=0.01)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if fast_paths.enabled() and x.device.type == "cpu" and not torch.compiler.is_exporting():
            # channels-last: the depth-wise convolution's backward is ~1.7x faster on CPU
            # and the point-wise ones become plain matrix products (see _pointwise)
            y = self.depthwise_conv(x.contiguous(memory_format=torch.channels_last))
            y = self.activation(self.hidden_balancer(_pointwise(y, self.pointwise_conv1)))
            y = _pointwise(y, self.pointwise_conv2)
        else:
            y = self.depthwise_conv(x)
            y = self.activation(self.hidden_balancer(self.pointwise_conv1(y)))
            y = self.pointwise_conv2(y)
        if self.training:
            rate = float(self.layerdrop_rate)
            if rate != 0.0:
                keep = torch.rand(x.shape[0], 1, 1, 1, device=x.device) > rate
                y = y * keep.to(y.dtype)
        y = self.out_balancer(x + y)
        if y.requires_grad and self.training:
            # whitening is over channels, which it expects last
            y = self.out_whiten(y.transpose(1, 3)).transpose(1, 3)
        return y


def _pointwise(x: torch.Tensor, conv: nn.Conv2d) -> torch.Tensor:
    """A 1x1 ``conv`` of ``x`` (B, C, H, W) as one matrix product over the channels.

    For a channels-last ``x`` the permutes are views and the result is channels-last;
    torch's CPU 1x1 convolution of a contiguous input takes its slow im2col path.
    """
    w = conv.weight.reshape(conv.weight.shape[0], -1)
    y = torch.nn.functional.linear(x.permute(0, 2, 3, 1), w, conv.bias)
    return y.permute(0, 3, 1, 2)
