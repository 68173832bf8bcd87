"""Eden, the learning-rate schedule used with ScaledAdam (paper eq. 8).

    lr = base_lr * ((t^2 + a_step^2) / a_step^2)^-0.25
                 * ((e^2 + a_epoch^2) / a_epoch^2)^-0.25
                 * linear(warmup_start, warmup_batches, t)

with ``t`` the batch index, ``e`` the epoch (completed epochs, or any measure of
the data seen expressed in epochs) and ``linear`` rising from ``warmup_start``
to 1 over ``warmup_batches`` batches, then staying at 1. Defaults are the
paper's (base 0.045, start 0.5 over 500 batches) and the authors' (alpha_step
7500 batches, alpha_epoch 3.5 epochs). Note: the authors' training script
passes warmup_start=0.1; the paper states 0.5, which is our default.
"""
from __future__ import annotations

from typing import Any

from torch.optim import Optimizer

from .lr_schedule import BatchEpochSchedule, check_count, check_positive

EDEN_DEFAULTS: dict[str, float] = {
    "base_lr": 0.045,
    "lr_batches": 7500.0,
    "lr_epochs": 3.5,
    "warmup_batches": 500.0,
    "warmup_start": 0.5,
}


def _check_warmup(warmup_batches: float, warmup_start: float) -> tuple[float, float]:
    warmup_batches = check_count("warmup_batches", warmup_batches)
    if not isinstance(warmup_start, (int, float)) or not 0.0 <= warmup_start <= 1.0:
        raise ValueError(f"warmup_start must be in [0, 1], got {warmup_start!r}")
    return warmup_batches, float(warmup_start)


def eden_factor(batch: float, epoch: float, lr_batches: float = 7500.0, lr_epochs: float = 3.5,
                warmup_batches: float = 500.0, warmup_start: float = 0.5) -> float:
    """Eq. 8 without ``base_lr``: the multiplier at ``batch`` and ``epoch``."""
    batch = check_count("batch", batch)
    epoch = check_count("epoch", epoch)
    lr_batches = check_positive("lr_batches", lr_batches)
    lr_epochs = check_positive("lr_epochs", lr_epochs)
    warmup_batches, warmup_start = _check_warmup(warmup_batches, warmup_start)
    batch_decay = ((batch ** 2 + lr_batches ** 2) / lr_batches ** 2) ** -0.25
    epoch_decay = ((epoch ** 2 + lr_epochs ** 2) / lr_epochs ** 2) ** -0.25
    if batch >= warmup_batches:
        warmup = 1.0
    else:
        warmup = warmup_start + (1.0 - warmup_start) * batch / warmup_batches
    return batch_decay * epoch_decay * warmup


def eden_lr(batch: float, epoch: float, base_lr: float = 0.045, lr_batches: float = 7500.0,
            lr_epochs: float = 3.5, warmup_batches: float = 500.0,
            warmup_start: float = 0.5) -> float:
    """The Eden learning rate (eq. 8) after ``batch`` batches and ``epoch`` epochs."""
    base_lr = check_positive("base_lr", base_lr)
    return base_lr * eden_factor(batch, epoch, lr_batches, lr_epochs, warmup_batches, warmup_start)


class Eden(BatchEpochSchedule):
    """Eden driving an optimizer: each group's lr is ``base_lr * eden_factor(batch, epoch)``.

    The optimizer's own ``lr`` (0.045 in the paper) is the peak ``base_lr``.
    """

    name = "eden"

    def __init__(self, optimizer: Optimizer, lr_batches: float = 7500.0, lr_epochs: float = 3.5,
                 warmup_batches: float = 500.0, warmup_start: float = 0.5) -> None:
        self.lr_batches = check_positive("lr_batches", lr_batches)
        self.lr_epochs = check_positive("lr_epochs", lr_epochs)
        self.warmup_batches, self.warmup_start = _check_warmup(warmup_batches, warmup_start)
        super().__init__(optimizer)

    def factor(self) -> float:
        return eden_factor(self.batch, self.epoch, self.lr_batches, self.lr_epochs,
                           self.warmup_batches, self.warmup_start)

    def hyperparameters(self) -> dict[str, Any]:
        return {"lr_batches": self.lr_batches, "lr_epochs": self.lr_epochs,
                "warmup_batches": self.warmup_batches, "warmup_start": self.warmup_start}
