"""Choosing the RNN-T implementation: k2's, our Triton kernels, or our plain PyTorch.

``rnnt_backend="auto"`` uses k2 when it imports; otherwise, for CUDA tensors,
the Triton mutual-information kernels (:mod:`harness.losses.mutual_information_triton`;
Triton ships with CUDA builds of PyTorch) when Triton imports; otherwise the
PyTorch recursion. "torch", "triton" and "k2" force one: "k2" fails clearly
when k2 is missing, "triton" when Triton is missing or the tensors are on a
CPU without Triton's interpreter (``TRITON_INTERPRET=1``, set before the
kernels are first imported). All backends expose the same five operations
with the same keyword arguments, so the transducer loss does not care which
one it got; :func:`~harness.losses.objective.compute_loss` records
``backend.name`` in its info dict.
"""
from __future__ import annotations

import functools
import importlib
import os
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Callable

import torch

from . import pruning, rnnt_loss

BACKENDS = ("auto", "torch", "triton", "k2")
TRITON_MODULE = "harness.losses.mutual_information_triton"


@dataclass(frozen=True)
class RnntBackend:
    """The RNN-T operations of one implementation (keyword arguments as in k2)."""

    name: str
    rnnt_loss: Callable[..., Any]
    rnnt_loss_smoothed: Callable[..., Any]
    get_prune_ranges: Callable[..., Any]
    do_rnnt_pruning: Callable[..., Any]
    rnnt_loss_pruned: Callable[..., Any]


TORCH_BACKEND = RnntBackend(
    name="torch",
    rnnt_loss=rnnt_loss.rnnt_loss,
    rnnt_loss_smoothed=rnnt_loss.rnnt_loss_smoothed,
    get_prune_ranges=pruning.get_prune_ranges,
    do_rnnt_pruning=pruning.do_rnnt_pruning,
    rnnt_loss_pruned=rnnt_loss.rnnt_loss_pruned,
)


@functools.lru_cache(maxsize=1)
def import_k2() -> Any | None:
    """The k2 module, or None when it is not installed or fails to import."""
    try:
        return importlib.import_module("k2")
    except Exception:  # a k2 built for another torch raises OSError/ImportError/RuntimeError
        return None


def k2_available() -> bool:
    return import_k2() is not None


def _k2_backend(k2: Any) -> RnntBackend:
    return RnntBackend(
        name="k2",
        rnnt_loss=k2.rnnt_loss,
        rnnt_loss_smoothed=k2.rnnt_loss_smoothed,
        get_prune_ranges=lambda px_grad, py_grad, boundary, s_range: k2.get_rnnt_prune_ranges(
            px_grad=px_grad, py_grad=py_grad, boundary=boundary, s_range=s_range),
        do_rnnt_pruning=k2.do_rnnt_pruning,
        rnnt_loss_pruned=k2.rnnt_loss_pruned,
    )


def import_triton_recursion() -> ModuleType | None:
    """:mod:`harness.losses.mutual_information_triton`, or None when Triton does not import."""
    try:
        return importlib.import_module(TRITON_MODULE)
    except ImportError:
        return None


def triton_backend(device: torch.device | str | None = None) -> RnntBackend:
    """Our RNN-T losses on the Triton kernels; raises a clear RuntimeError where they cannot run."""
    on_cpu = device is not None and torch.device(device).type != "cuda"
    if on_cpu and os.environ.get("TRITON_INTERPRET") != "1":
        raise RuntimeError(f"rnnt_backend='triton' needs CUDA tensors (got {torch.device(device)}); on a "
                           "CPU set TRITON_INTERPRET=1 to run the kernels in Triton's interpreter, or use "
                           "rnnt_backend='torch' or 'auto'")
    module = import_triton_recursion()
    if module is None:
        raise RuntimeError("rnnt_backend='triton' but triton does not import here (pip install triton, "
                           "or use a CUDA build of PyTorch); use rnnt_backend='torch' or 'auto'")
    if on_cpu and not module.interpreted():
        raise RuntimeError(f"rnnt_backend='triton' on {torch.device(device)}: TRITON_INTERPRET=1 was set "
                           f"after {TRITON_MODULE} was imported, so its kernels are compiled for CUDA; "
                           "set it before the first import, or use rnnt_backend='torch'")
    recursion = module.mutual_information_recursion_triton
    return RnntBackend(
        name="triton",
        rnnt_loss=functools.partial(rnnt_loss.rnnt_loss, recursion=recursion),
        rnnt_loss_smoothed=functools.partial(rnnt_loss.rnnt_loss_smoothed, recursion=recursion),
        get_prune_ranges=pruning.get_prune_ranges,
        do_rnnt_pruning=pruning.do_rnnt_pruning,
        rnnt_loss_pruned=functools.partial(rnnt_loss.rnnt_loss_pruned, recursion=recursion),
    )


def resolve_rnnt_backend(name: str = "auto", device: torch.device | str | None = None) -> RnntBackend:
    """The backend for a ``LossConfig.rnnt_backend`` setting and the device of the loss's tensors.

    ``device`` None means "unknown": "auto" then never picks Triton, and a
    forced "triton" is checked only when the kernels run.
    """
    if name not in BACKENDS:
        raise ValueError(f"unknown rnnt_backend {name!r}; allowed: {', '.join(BACKENDS)}")
    if name == "torch":
        return TORCH_BACKEND
    if name == "triton":
        return triton_backend(device)
    k2 = import_k2()
    if k2 is not None:
        return _k2_backend(k2)
    if name == "k2":
        raise RuntimeError("rnnt_backend='k2' but k2 does not import here (no wheel for this "
                           "Python/torch?); use rnnt_backend='torch', 'triton' or 'auto'")
    if device is not None and torch.device(device).type == "cuda" and import_triton_recursion() is not None:
        return triton_backend(device)
    return TORCH_BACKEND
