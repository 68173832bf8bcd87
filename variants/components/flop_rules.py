"""Extra FLOPs per output element that the authors count on top of DeepSpeed's profiler.

DeepSpeed's ``get_model_profile`` only counts the torch functions it patches
(linear, conv, matmul, softmax, ...); element-wise work written with Python
operators counts zero. For the paper's GFLOPs the authors added fixed costs for
their own element-wise modules: BiasNorm 5 FLOPs per output element (subtract
bias, square, mean, scale, multiply), SwooshR and SwooshL 1, Bypass 2
(``x + c * (y - x)``). These are the rules the notes' "with the authors' extra
rules" row applies (40.95 / 63.27 / 108.24 GFLOPs for S / M / L, against plain
DeepSpeed's 40.67 / 62.78 / 107.54). ``harness profile`` applies this table
through DeepSpeed's profiler (a forward hook per module of a listed type).
"""
from __future__ import annotations

from .bias_norm import BiasNorm
from .bypass import Bypass
from .swoosh import SwooshL, SwooshR

EXTRA_FLOPS_PER_ELEMENT: dict[type, int] = {
    BiasNorm: 5,
    SwooshR: 1,
    SwooshL: 1,
    Bypass: 2,
}
