"""Base class of the learning-rate schedules that depend on both batch and epoch.

Eden (paper eq. 8) is a function of the batch index *and* the epoch (or any
measure of the data seen); Noam depends on the batch index only. Both share the
same driving interface, the one the authors' training loop uses:

- ``step_batch(batch_count)`` after every optimizer step, with the number of
  batches trained so far (summed over epochs);
- ``step_epoch(epoch)`` at the start of each epoch, with the number of epochs
  completed so far (a float is allowed: "amount of data seen" in epochs).

Each parameter group keeps its own peak learning rate in ``group["base_lr"]``
(set from ``group["lr"]`` when the schedule is attached, so per-module lr
scales survive), and the schedule writes ``base_lr * factor`` into
``group["lr"]``.
"""
from __future__ import annotations

import math
import numbers
from typing import Any

from torch.optim import Optimizer


def check_count(name: str, value: float) -> float:
    """``value`` as a float if it is a finite number >= 0, else a clear ValueError."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a number >= 0, got {value!r}")
    value = float(value)
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return value


def check_positive(name: str, value: float) -> float:
    """``value`` as a float if it is a finite number > 0, else a clear ValueError."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) \
            or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


class BatchEpochSchedule:
    """Sets every group's lr to ``group["base_lr"] * self.factor()``.

    Subclasses implement :meth:`factor` from ``self.batch`` and ``self.epoch``.
    The learning rates are written as soon as the schedule is constructed, so the
    first optimizer step already uses the schedule's value at batch 0.
    """

    #: registry name, e.g. "eden"
    name: str = ""

    def __init__(self, optimizer: Optimizer) -> None:
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"{type(self).__name__} needs a torch.optim.Optimizer, "
                            f"got {type(optimizer).__name__}")
        self.optimizer = optimizer
        for group in optimizer.param_groups:
            group.setdefault("base_lr", group["lr"])
        self.batch = 0.0
        self.epoch = 0.0
        self._last_lr: list[float] = []
        self._set_lrs()

    # --- what subclasses define -------------------------------------------------
    def factor(self) -> float:
        """Multiplier applied to each group's ``base_lr`` at (self.batch, self.epoch)."""
        raise NotImplementedError

    def hyperparameters(self) -> dict[str, Any]:
        """The schedule's settings (saved in state_dict for checking on load)."""
        raise NotImplementedError

    # --- driving ----------------------------------------------------------------
    def step_batch(self, batch_count: int | float | None = None) -> None:
        """Set the number of batches trained so far (or add one if None)."""
        self.batch = self.batch + 1 if batch_count is None else check_count("batch_count", batch_count)
        self._set_lrs()

    def step_epoch(self, epoch: int | float | None = None) -> None:
        """Set the number of epochs completed so far (or add one if None)."""
        self.epoch = self.epoch + 1 if epoch is None else check_count("epoch", epoch)
        self._set_lrs()

    def get_last_lr(self) -> list[float]:
        """The learning rate of each parameter group, as last set."""
        return list(self._last_lr)

    def _set_lrs(self) -> None:
        f = self.factor()
        for group in self.optimizer.param_groups:
            group["lr"] = group["base_lr"] * f
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]

    # --- checkpointing ----------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Position in training plus the settings; base lrs live in the optimizer's groups."""
        return {"name": self.name, "batch": self.batch, "epoch": self.epoch,
                "hyperparameters": self.hyperparameters()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the position; a checkpoint of another schedule is an error."""
        if state.get("name", self.name) != self.name:
            raise ValueError(f"cannot load a {state.get('name')!r} schedule state into "
                             f"a {self.name!r} schedule")
        self.batch = check_count("batch", state["batch"])
        self.epoch = check_count("epoch", state["epoch"])
        self._set_lrs()

    def __repr__(self) -> str:
        hp = ", ".join(f"{k}={v}" for k, v in self.hyperparameters().items())
        return f"{type(self).__name__}({hp}; batch={self.batch:g}, epoch={self.epoch:g})"
