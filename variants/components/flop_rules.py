"""Extra FLOPs per output element that the authors count on top of DeepSpeed's profiler.

DeepSpeed's ``get_model_profile`` only counts the torch functions it patches
(linear, conv, matmul, softmax, ...); element-wise work written with Python
operators counts zero. For the paper's GFLOPs the authors added fixed costs for
their own element-wise modules: BiasNorm 5 FLOPs per output element (subtract
bias, square, mean, scale, multiply), SwooshR and SwooshL 1, Bypass 2
(``x + c * (y - x)``). They come from the authors' profiling script
(icefall ``egs/librispeech/ASR/zipformer/my_profile.py``: forward hooks for
BiasNorm and the Bypass module; Swoosh counted "as swish", one per element, by
``icefall/profiler.py``). ``harness profile`` applies this table through
DeepSpeed's profiler (a forward hook per module of a listed type).

Measured (authors' code, random weights, Zipformer-S, 3000 x 80 frames): the
40.95 GFLOPs "with the authors' extra rules" is icefall's own
profiler, which also counts sigmoid, tanh, ``Tensor.softmax`` and ``torch.sum``
(40.73 plain), on a model that also holds the joiner's ``encoder_proj``
(Linear(256 -> 512) on 748 frames, +0.20 GFLOPs), plus these hooks (+0.02).
Plain DeepSpeed on encoder_embed + encoder gives 40.67, which ours matches.
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
