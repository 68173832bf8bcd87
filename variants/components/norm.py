"""Resolve the ``norm`` switch: ``bias_norm`` (paper) or ``layer_norm`` (ablation)."""
from __future__ import annotations

from torch import nn

from .bias_norm import BiasNorm

NORMS = ("bias_norm", "layer_norm")


def create_norm(kind: str, num_channels: int) -> nn.Module:
    if kind == "bias_norm":
        return BiasNorm(num_channels)
    if kind == "layer_norm":
        return nn.LayerNorm(num_channels)
    raise ValueError(f"unknown norm {kind!r}; allowed: {', '.join(NORMS)}")
