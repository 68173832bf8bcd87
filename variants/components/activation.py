"""Resolve the ``activation`` switch for a position in the network.

Paper section 3.4: SwooshL for the "normally-off" modules with a bypass
connection (feed-forward modules and the ConvNeXt layer of Conv-Embed), SwooshR
for convolution modules and the rest of Conv-Embed (``swoosh``); this matches
the authors' implementation, whose convolution module ends in SwooshR.
Table 5 also has SwooshR everywhere (``swoosh_r``) and Swish everywhere
(``swish``).
"""
from __future__ import annotations

from torch import nn

from .swoosh import Swish, SwooshL, SwooshR

ACTIVATIONS = ("swoosh", "swoosh_r", "swish")
POSITIONS = ("feed_forward", "convnext", "convolution", "conv_embed", "other")
#: positions that get SwooshL under the paper's ``swoosh`` choice
NORMALLY_OFF = ("feed_forward", "convnext")


def create_activation(kind: str, position: str = "other") -> nn.Module:
    """The activation module for ``kind`` (a switch value) at ``position``."""
    if position not in POSITIONS:
        raise ValueError(f"unknown activation position {position!r}; allowed: {', '.join(POSITIONS)}")
    if kind == "swish":
        return Swish()
    if kind == "swoosh_r":
        return SwooshR()
    if kind == "swoosh":
        return SwooshL() if position in NORMALLY_OFF else SwooshR()
    raise ValueError(f"unknown activation {kind!r}; allowed: {', '.join(ACTIVATIONS)}")
