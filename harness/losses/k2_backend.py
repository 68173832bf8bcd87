"""Choosing the RNN-T implementation: our plain-PyTorch one or k2's.

``rnnt_backend="auto"`` uses k2 when it imports and ours otherwise; "torch"
and "k2" force one ("k2" fails clearly when k2 is missing). Both expose the
same five operations with the same keyword arguments, so the transducer loss
does not care which one it got; the training run records ``backend.name``.
"""
from __future__ import annotations

import functools
import importlib
from dataclasses import dataclass
from typing import Any, Callable

from . import pruning, rnnt_loss

BACKENDS = ("auto", "torch", "k2")


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


def resolve_rnnt_backend(name: str = "auto") -> RnntBackend:
    """The backend for a ``LossConfig.rnnt_backend`` setting."""
    if name not in BACKENDS:
        raise ValueError(f"unknown rnnt_backend {name!r}; allowed: {', '.join(BACKENDS)}")
    if name == "torch":
        return TORCH_BACKEND
    k2 = import_k2()
    if k2 is None:
        if name == "k2":
            raise RuntimeError("rnnt_backend='k2' but k2 does not import here (no wheel for this "
                               "Python/torch?); use rnnt_backend='torch' or 'auto'")
        return TORCH_BACKEND
    return _k2_backend(k2)
