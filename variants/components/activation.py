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

#: switch value -> (class at the "normally-off" positions, class everywhere else);
#: keys: ``variants.spec.Activation``
ACTIVATIONS: dict[str, tuple[type[nn.Module], type[nn.Module]]] = {
    "swoosh": (SwooshL, SwooshR),
    "swoosh_r": (SwooshR, SwooshR),
    "swish": (Swish, Swish),
}
POSITIONS = ("feed_forward", "convnext", "convolution", "conv_embed", "other")
#: positions that get the first class of a pair (SwooshL under the paper's ``swoosh`` choice)
NORMALLY_OFF = ("feed_forward", "convnext")


def create_activation(kind: str, position: str = "other") -> nn.Module:
    """The activation module for ``kind`` (a switch value) at ``position``."""
    if position not in POSITIONS:
        raise ValueError(f"unknown activation position {position!r}; allowed: {', '.join(POSITIONS)}")
    if kind not in ACTIVATIONS:
        raise ValueError(f"unknown activation {kind!r}; allowed: {', '.join(ACTIVATIONS)}")
    normally_off, other = ACTIVATIONS[kind]
    return normally_off() if position in NORMALLY_OFF else other()
