"""Count the ops that copy a device tensor's value to the host (``.item()``,
``int(t)``, ``bool(t)``, ``.tolist()``): each is a host synchronisation on a GPU.

:class:`HostSyncs` is a ``TorchDispatchMode`` that records every
``aten._local_scalar_dense`` (what those calls dispatch to) with the Python
line that caused it, so a CPU run finds the syncs a GPU step would make
(``torch.cuda.set_sync_debug_mode`` does the same on a GPU only).
"""
from __future__ import annotations

import traceback
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

SYNC_OPS = {torch.ops.aten._local_scalar_dense.default, torch.ops.aten.item.default}


class HostSyncs(TorchDispatchMode):
    """Within: ``calls`` lists "file:line code" for each value read back to the host."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None) -> Any:
        if func in SYNC_OPS:
            frames = [f for f in traceback.extract_stack()[:-1]
                      if "torch/" not in f.filename.replace("\\", "/")]
            f = frames[-1] if frames else None
            self.calls.append(f"{f.filename}:{f.lineno} {f.line}" if f else str(func))
        return func(*args, **(kwargs or {}))
