"""BiasNorm (paper section 3.3, eq. 2):

    BiasNorm(x) = x / RMS[x - b] * exp(gamma)

with a learnable channel-wise bias ``b`` and a learnable scalar ``gamma``
(``log_scale``). Like the authors' implementation, ``gamma`` is kept in
[log_scale_min, log_scale_max] during training through its gradient (see
``param_limit``; the forward pass never clamps, so train and eval agree), and
``b`` starts near zero.
"""
from __future__ import annotations

import torch
from torch import nn

from .param_limit import limit_param_value


class BiasNorm(nn.Module):
    def __init__(self, num_channels: int, channel_dim: int = -1, log_scale: float = 1.0,
                 log_scale_min: float = -1.5, log_scale_max: float = 1.5):
        super().__init__()
        self.num_channels = num_channels
        self.channel_dim = channel_dim
        self.log_scale = nn.Parameter(torch.tensor(float(log_scale)))
        self.bias = nn.Parameter(torch.empty(num_channels).normal_(mean=0.0, std=1e-4))
        self.log_scale_min = log_scale_min
        self.log_scale_max = log_scale_max

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[self.channel_dim] != self.num_channels:
            raise ValueError(f"BiasNorm expected {self.num_channels} channels on dim "
                             f"{self.channel_dim}, got shape {tuple(x.shape)}")
        bias = self.bias
        if self.channel_dim not in (-1, x.ndim - 1):
            shape = [1] * x.ndim
            shape[self.channel_dim] = -1
            bias = bias.view(shape)
        log_scale = self.log_scale
        if self.training:
            log_scale = limit_param_value(log_scale, self.log_scale_min, self.log_scale_max)
        rms = torch.mean((x - bias) ** 2, dim=self.channel_dim, keepdim=True).clamp_min(1e-20).sqrt()
        return x / rms * log_scale.exp()

    def extra_repr(self) -> str:
        return f"{self.num_channels}, channel_dim={self.channel_dim}"
