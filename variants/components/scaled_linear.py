"""Layers with a scaled initial weight (the authors' ``initial_scale``).

ScaledAdam learns parameter scales, so the authors start some projections small
(e.g. 0.05 on module outputs) instead of normalising every module. The weight
is the default PyTorch initialisation times ``initial_scale``; a bias, if any,
is uniform in ``[-0.1, 0.1] * initial_scale``.
"""
from __future__ import annotations

import torch
from torch import nn


def _rescale(layer: nn.Module, initial_scale: float) -> None:
    with torch.no_grad():
        layer.weight.mul_(initial_scale)
        if layer.bias is not None:
            nn.init.uniform_(layer.bias, -0.1 * initial_scale, 0.1 * initial_scale)


def scaled_linear(in_features: int, out_features: int, bias: bool = True,
                  initial_scale: float = 1.0) -> nn.Linear:
    layer = nn.Linear(in_features, out_features, bias=bias)
    _rescale(layer, initial_scale)
    return layer


def scaled_conv2d(in_channels: int, out_channels: int, kernel_size, initial_scale: float = 1.0,
                  **kwargs) -> nn.Conv2d:
    layer = nn.Conv2d(in_channels, out_channels, kernel_size, **kwargs)
    _rescale(layer, initial_scale)
    return layer
