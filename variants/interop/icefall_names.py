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

#: (theirs, ours) regular-expression pairs; each side's pattern matches only its own names
_RENAMES: tuple[tuple[str, str], ...] = (
    (r"^encoder_embed\.conv\.4\.", "encoder_embed.conv.3."),
    (r"^encoder_embed\.conv\.7\.", "encoder_embed.conv.6."),
    (r"^(encoder\.encoders\.\d+\.(?:encoder\.)?layers\.\d+\.)bypass_scale$", r"\1unused_bypass_scale"),
    (r"\.nonlin_attention\.", ".nonlinear_attention."),
    (r"^ctc_output\.1\.", "ctc_output.linear."),
    (r"^attention_decoder\.decoder\.", "attention_decoder."),
)
_REVERSE: tuple[tuple[str, str], ...] = (
    (r"^encoder_embed\.conv\.3\.", "encoder_embed.conv.4."),
    (r"^encoder_embed\.conv\.6\.", "encoder_embed.conv.7."),
    (r"^(encoder\.encoders\.\d+\.(?:encoder\.)?layers\.\d+\.)unused_bypass_scale$", r"\1bypass_scale"),
    (r"\.nonlinear_attention\.", ".nonlin_attention."),
    (r"^ctc_output\.linear\.", "ctc_output.1."),
    (r"^attention_decoder\.", "attention_decoder.decoder."),
)
_FORWARD_RE = tuple((re.compile(a), b) for a, b in _RENAMES)
_REVERSE_RE = tuple((re.compile(a), b) for a, b in _REVERSE)


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
