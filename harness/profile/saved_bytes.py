"""Bytes saved for backward by an encoder's training forward pass, per second of audio.

What a training step keeps between forward and backward is most of its peak
memory. :func:`count_saved_bytes` counts it without a GPU: every tensor that
autograd packs (``torch.autograd.graph.saved_tensors_hooks``) is recorded once
per storage, parameters excluded, so views and tensors saved by several nodes
count once.

Mixed precision on CPU is not mixed precision on CUDA: CPU autocast runs
softmax, softplus, pow, exp, log, sum ... in the input's (lower) precision,
CUDA autocast in float32, so a CPU bf16 count would miss the float32 copies a
GPU keeps. :func:`cuda_autocast_policy` makes CPU autocast follow CUDA's
policy for those ops (a temporary ``AutocastCPU`` kernel per op, removed on
exit): under it a CPU bf16 count is what a CUDA bf16 forward saves.
"""
from __future__ import annotations

import contextlib
import random
from dataclasses import dataclass
from typing import Any, Iterator, Mapping

import torch

from variants import fast_paths

from .measure import FEATURE_RATE_HZ, PRECISIONS

#: ops CUDA autocast runs in float32 that CPU autocast leaves in the input's dtype
#: (the subset an encoder uses; see torch's autocast_mode.cpp, the CUDA fp32 lists)
CUDA_FP32_OPS = ("softmax.int", "log_softmax.int", "softplus", "exp", "log", "log1p",
                 "pow.Tensor_Scalar", "pow.Tensor_Tensor", "rsqrt", "reciprocal",
                 "sum", "sum.dim_IntList", "layer_norm", "logsumexp", "cumsum")


def _fp32_kernel(op):
    keys = torch._C.DispatchKeySet(torch._C.DispatchKey.AutocastCPU)

    def kernel(*args, **kwargs):
        def up(a):
            if isinstance(a, torch.Tensor) and a.dtype in (torch.bfloat16, torch.float16):
                return a.float()
            return a
        with torch._C._ExcludeDispatchKeyGuard(keys):
            return op(*[up(a) for a in args], **{k: up(v) for k, v in kwargs.items()})
    return kernel


@contextlib.contextmanager
def cuda_autocast_policy() -> Iterator[None]:
    """Within: ``torch.autocast("cpu", ...)`` runs :data:`CUDA_FP32_OPS` in float32, as CUDA does."""
    lib = torch.library.Library("aten", "IMPL")
    try:
        for name in CUDA_FP32_OPS:
            base, _, overload = name.partition(".")
            packet = getattr(torch.ops.aten, base)
            op = getattr(packet, overload or "default")
            lib.impl(name, _fp32_kernel(op), "AutocastCPU")
        yield
    finally:
        lib._destroy()


@dataclass(frozen=True)
class SavedTensor:
    shape: tuple[int, ...]
    dtype: str
    nbytes: int        # of its storage


def count_saved_bytes(fn, exclude: Iterator[torch.Tensor] = ()) -> tuple[Any, list[SavedTensor]]:
    """Run ``fn()``; return its result and each storage autograd saved (``exclude``: e.g. parameters)."""
    skip = {t.untyped_storage().data_ptr() for t in exclude}
    seen: dict[int, SavedTensor] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        s = t.untyped_storage()
        key = s.data_ptr()
        if key not in skip and key not in seen:
            seen[key] = SavedTensor(tuple(t.shape), str(t.dtype).replace("torch.", ""), s.nbytes())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    return out, list(seen.values())


@dataclass(frozen=True)
class SavedBytesResult:
    variant: str
    precision: str       # "float32" or "bf16" (CUDA autocast policy)
    batch: int
    duration_s: float
    saved_bytes: int
    largest: list[SavedTensor]

    @property
    def mb_per_audio_second(self) -> float:
        return self.saved_bytes / 2**20 / (self.batch * self.duration_s)


def measure_saved_bytes(variant: str, precision: str = "float32", batch: int = 2,
                        duration_s: float = 4.0, batch_count: float = 30000.0, seed: int = 0,
                        overrides: Mapping[str, Any] | None = None, top: int = 5) -> SavedBytesResult:
    """Bytes one training forward of Conv-Embed + encoder saves for backward (on CPU, with
    the arithmetic a GPU runs: ``fast_paths.device_independent()``, so the CPU-only layout
    paths and C loops, which trade memory for time, do not count).

    ``batch_count`` sets the training schedules (the default is past every
    warm-up: no layer skipping); ``seed`` fixes dropout and the randomly
    applied Balancers/Whiteners, so two calls with equal arguments agree.
    """
    from variants import build_model

    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; allowed: {', '.join(PRECISIONS)}")
    if batch < 1 or duration_s * FEATURE_RATE_HZ < 10:
        raise ValueError(f"need batch >= 1 and duration >= 0.1 s, got {batch} x {duration_s} s")
    torch.manual_seed(seed)
    model = build_model(variant, objective="ctc", **dict(overrides or {})).train()
    model.set_batch_count(batch_count)
    frames = int(round(duration_s * FEATURE_RATE_HZ))
    x = torch.randn(batch, frames, model.spec.encoder.num_features)
    lens = torch.full((batch,), frames, dtype=torch.int64)
    torch.manual_seed(seed)
    random.seed(seed)
    bf16 = precision == "bf16"
    with contextlib.ExitStack() as stack:
        stack.enter_context(fast_paths.device_independent())
        if bf16:
            stack.enter_context(cuda_autocast_policy())
        stack.enter_context(torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16))
        (out, _), saved = count_saved_bytes(lambda: model.forward_encoder(x, lens),
                                            exclude=model.parameters())
    del out
    largest = sorted(saved, key=lambda s: -s.nbytes)[:top]
    return SavedBytesResult(variant, precision, batch, float(duration_s),
                            sum(s.nbytes for s in saved), largest)
