"""Resolve the ``norm`` switch: ``bias_norm`` (paper) or ``layer_norm`` (ablation)."""
from __future__ import annotations

from typing import Callable

from torch import nn

from .bias_norm import BiasNorm

#: switch value -> module class taking the number of channels (keys: ``variants.spec.Norm``)
NORMS: dict[str, Callable[[int], nn.Module]] = {"bias_norm": BiasNorm, "layer_norm": nn.LayerNorm}


def create_norm(kind: str, num_channels: int) -> nn.Module:
    if kind not in NORMS:
        raise ValueError(f"unknown norm {kind!r}; allowed: {', '.join(NORMS)}")
    return NORMS[kind](num_channels)
