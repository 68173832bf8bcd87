"""Named parameter groups with per-module learning-rate scales.

A parameter's lr scale is the product of

- every ``lr_scale`` attribute found on the modules along its path (the
  authors' convention: ``model.encoder_embed.lr_scale = 0.5`` scales all of
  that module's parameters), and
- every entry of ``lr_scales`` whose key is the parameter's name or one of its
  module prefixes (``{"encoder.encoders.0": 0.5}``).

Parameters with the same scale share one group ``{"params": [(name, p), ...],
"lr": lr * scale, "lr_scale": scale}``; the names reach the optimizer (torch
keeps them as ``group["param_names"]``).
"""
from __future__ import annotations

import math
from typing import Mapping

from torch import nn


def _prefixes(name: str) -> list[str]:
    """'a.b.c' -> ['', 'a', 'a.b', 'a.b.c']."""
    parts = name.split(".")
    return [""] + [".".join(parts[:i]) for i in range(1, len(parts) + 1)]


def named_parameter_groups(model: nn.Module, lr: float,
                           lr_scales: Mapping[str, float] | None = None) -> list[dict]:
    """Groups of ``(name, parameter)`` by lr scale, in order of first appearance."""
    lr_scales = dict(lr_scales or {})
    for key, value in lr_scales.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) \
                or not math.isfinite(value) or value < 0:
            raise ValueError(f"lr_scales[{key!r}] must be a finite number >= 0, got {value!r}")
    module_scale = {name: float(m.lr_scale) for name, m in model.named_modules()
                    if hasattr(m, "lr_scale")}
    groups: dict[float, dict] = {}
    used: set[str] = set()
    for name, p in model.named_parameters():
        scale = 1.0
        for prefix in _prefixes(name):
            scale *= module_scale.get(prefix, 1.0)
            if prefix in lr_scales:
                scale *= float(lr_scales[prefix])
                used.add(prefix)
        if scale not in groups:
            groups[scale] = {"params": [], "lr": lr * scale, "lr_scale": scale}
        groups[scale]["params"].append((name, p))
    unused = sorted(set(lr_scales) - used)
    if unused:
        top = sorted({n.split(".")[0] for n, _ in model.named_parameters()})
        raise ValueError(f"lr_scales names no parameter or module of the model: {unused}; "
                         f"keys are dotted module paths, e.g. one of {top}")
    if not groups:
        raise ValueError("the model has no parameters to optimize")
    return list(groups.values())
