"""Encoders. Each module exposes ``build(cfg) -> (encoder_embed, encoder)``.

Interface of the two returned modules (batch-major everywhere):
  encoder_embed(x: (B, T, F) fbank at 100 Hz, x_lens: (B,)) -> (y: (B, T1, D1), y_lens)
  encoder(y, y_lens) -> (out: (B, T2, cfg.output_dim), out_lens)
Padding is derived from the lengths inside the modules.
"""
from __future__ import annotations

from torch import nn


def build_encoder(cfg) -> tuple[nn.Module, nn.Module]:
    if cfg.kind == "zipformer":
        from .zipformer import build
    elif cfg.kind == "conformer":
        from .conformer import build
    else:  # pragma: no cover - the schema forbids it
        raise ValueError(f"unknown encoder kind {cfg.kind!r}; allowed: zipformer, conformer")
    return build(cfg)
