"""Resolve the ``activation`` switch for a position in the network.

The paper uses SwooshL in the feed-forward and convolution modules and SwooshR
elsewhere (``swoosh``); Table 5 also has SwooshR everywhere (``swoosh_r``) and
Swish everywhere (``swish``).
"""
from __future__ import annotations

from torch import nn

from .swoosh import Swish, SwooshL, SwooshR

ACTIVATIONS = ("swoosh", "swoosh_r", "swish")
POSITIONS = ("feed_forward", "convolution", "other")


def create_activation(kind: str, position: str = "other") -> nn.Module:
    if position not in POSITIONS:
        raise ValueError(f"unknown activation position {position!r}; allowed: {', '.join(POSITIONS)}")
    if kind == "swish":
        return Swish()
    if kind == "swoosh_r":
        return SwooshR()
    if kind == "swoosh":
        return SwooshL() if position in ("feed_forward", "convolution") else SwooshR()
    raise ValueError(f"unknown activation {kind!r}; allowed: {', '.join(ACTIVATIONS)}")
