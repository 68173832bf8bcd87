"""Parameter names: the authors' zipformer recipe (icefall) <-> ours.

Our modules follow the authors' layout, so a name maps by at most one of six
renames (measured against their ``egs/librispeech/ASR/zipformer`` code; the
committed ``icefall_manifest.json`` lists every name and shape):

=============================================  ==========================================
theirs                                         ours
=============================================  ==========================================
``encoder_embed.conv.4.*``                     ``encoder_embed.conv.3.*`` (their Sequential
``encoder_embed.conv.7.*``                     ``encoder_embed.conv.6.*``  has one more
                                                                           module per conv)
``encoder....layers.N.bypass_scale``           ``encoder....layers.N.unused_bypass_scale``
``....nonlin_attention.*``                     ``....nonlinear_attention.*``
``ctc_output.1.*``                             ``ctc_output.linear.*``
``attention_decoder.decoder.*``                ``attention_decoder.*``
=============================================  ==========================================

Every other name (transducer decoder, joiner, simple projections, the
remaining encoder parameters) is the same on both sides. Neither side keeps
buffers in its state dict, so there is nothing to add or drop.
"""
from __future__ import annotations

import re

#: (context before, their piece, our piece, context after): the piece is renamed where the
#: contexts (regular expressions, no capturing groups) surround it; one table, both directions
_RENAMES: tuple[tuple[str, str, str, str], ...] = (
    (r"^encoder_embed\.conv\.", "4.", "3.", ""),
    (r"^encoder_embed\.conv\.", "7.", "6.", ""),
    (r"^encoder\.encoders\.\d+\.(?:encoder\.)?layers\.\d+\.", "bypass_scale", "unused_bypass_scale", "$"),
    (r"\.", "nonlin_attention.", "nonlinear_attention.", ""),
    (r"^ctc_output\.", "1.", "linear.", ""),
    (r"^attention_decoder\.", "decoder.", "", ""),
)


def _rules(src: int, dst: int) -> tuple[tuple[re.Pattern, str], ...]:
    return tuple((re.compile(f"({r[0]}){re.escape(r[src])}(?={r[3]})"), r"\g<1>" + r[dst]) for r in _RENAMES)


_FORWARD_RE = _rules(1, 2)
_REVERSE_RE = _rules(2, 1)


def _apply(name: str, rules) -> str:
    for pattern, repl in rules:
        new, n = pattern.subn(repl, name)
        if n:
            return new
    return name


def icefall_to_ours(name: str) -> str:
    """Our parameter name for one of the authors' names."""
    return _apply(name, _FORWARD_RE)


def ours_to_icefall(name: str) -> str:
    """The authors' parameter name for one of ours."""
    return _apply(name, _REVERSE_RE)
