"""The bytes a nest of tensors holds: a neutral helper for optimizer state (``variants.optim``)
and the disk space a checkpoint needs (``harness.train``)."""
from __future__ import annotations

from typing import Any

import torch


def tensor_bytes(obj: Any) -> int:
    """Bytes of every tensor in a (nested) dict, list or tuple: optimizer state, a checkpoint."""
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, dict):
        return sum(tensor_bytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(tensor_bytes(v) for v in obj)
    return 0
