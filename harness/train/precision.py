"""Mixed-precision selection (the device: :func:`harness.devices.select_device`).

``auto`` picks bf16 where the GPU supports it and fp16 (with a GradScaler)
otherwise; on a CPU it trains in fp32. fp16 uses
the authors' GradScaler handling: start at scale 1.0, grow a small scale back
faster than the default schedule, and stop with a clear message when the
scale collapses (the model is diverging or fp16 overflows).
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

#: the authors stop when the loss scale falls below this
SCALE_COLLAPSE = 1e-5
#: and warn below this
SCALE_WARN = 0.01


class LossScaleCollapsedError(RuntimeError):
    """fp16's loss scale fell below :data:`SCALE_COLLAPSE`."""


@dataclass(frozen=True)
class Precision:
    """How the forward pass runs: dtype under autocast and whether a GradScaler is needed."""

    name: str  # fp32 | bf16 | fp16
    dtype: torch.dtype
    device_type: str

    @property
    def autocast(self) -> bool:
        return self.name != "fp32"

    @property
    def needs_scaler(self) -> bool:
        return self.name == "fp16"

    def context(self) -> contextlib.AbstractContextManager:
        if not self.autocast:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device_type, dtype=self.dtype)


def select_precision(requested: str, device: torch.device) -> Precision:
    """``auto``: bf16 on GPUs that support it, fp16 on older GPUs, fp32 on CPU."""
    name = requested
    if requested == "auto":
        if device.type == "cuda":
            name = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        else:
            name = "fp32"
    if name == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise RuntimeError(f"train.precision is bf16 but {torch.cuda.get_device_name(device)} "
                           "does not support bf16; use fp16 or auto")
    if name == "fp16" and device.type == "cpu":
        raise RuntimeError("train.precision fp16 needs a GPU; use fp32 or bf16 on CPU")
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[name]
    return Precision(name=name, dtype=dtype, device_type=device.type)


class LossScaler:
    """A GradScaler (enabled only for fp16) with the authors' extra handling."""

    def __init__(self, precision: Precision):
        self.enabled = precision.needs_scaler
        self.scaler = torch.amp.GradScaler(precision.device_type, enabled=self.enabled, init_scale=1.0)
        self.warned = False

    def scale(self, loss: torch.Tensor) -> torch.Tensor:
        return self.scaler.scale(loss)

    def step(self, optimizer: torch.optim.Optimizer) -> None:
        self.scaler.step(optimizer)
        self.scaler.update()

    @property
    def value(self) -> float:
        return float(self.scaler.get_scale()) if self.enabled else 1.0

    def check(self, batch_idx: int, step: int) -> str | None:
        """After a step: raise if the scale collapsed, regrow a small one; return a warning once."""
        if not self.enabled:
            return None
        s = self.value
        if s < SCALE_COLLAPSE:
            raise LossScaleCollapsedError(
                f"fp16 loss scale collapsed to {s:.2g} at step {step}: gradients overflow at every "
                "step, so the model is diverging or fp16's range is too small; try bf16 "
                "(train.precision: bf16 on GPUs that support it), fp32, or a lower learning rate")
        # the authors grow a small scale back faster than GradScaler's default interval
        if ((batch_idx % 25 == 0 and s < 2.0) or (batch_idx % 100 == 0 and s < 8.0)
                or (batch_idx % 400 == 0 and s < 32.0)):
            self.scaler.update(s * 2.0)
        if s < SCALE_WARN and not self.warned:
            self.warned = True
            return f"fp16 loss scale is small ({s:.2g}) at step {step}"
        return None

    def state_dict(self) -> dict:
        return self.scaler.state_dict()

    def load_state_dict(self, state: dict) -> None:
        if self.enabled and state:
            self.scaler.load_state_dict(state)
