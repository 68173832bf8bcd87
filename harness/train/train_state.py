"""What training carries between steps and hands back: the state a checkpoint holds and a
resume restores, the result of a run, and the error of a run whose loss diverged."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from torch import nn

from .precision import LossScaler


class DivergedError(RuntimeError):
    """The loss became NaN or infinite (or fp16's loss scale collapsed)."""

    def __init__(self, step: int, message: str):
        self.step = step
        super().__init__(message)


@dataclass
class TrainResult:
    step: int
    epoch: int
    stopped_early: str = ""
    profile: dict[str, float] = field(default_factory=dict)


@dataclass
class TrainState:
    """What a checkpoint holds and a resume restores: the model, its running average, the
    optimizer, schedule and loss scaler, and where training is (steps, batches, epoch)."""

    model: nn.Module
    model_avg: Optional[nn.Module]
    optimizer: Any
    scheduler: Any
    scaler: LossScaler
    #: optimizer steps taken
    step: int = 0
    #: batches seen (drives the model's schedules)
    batches: int = 0
    #: the epoch being trained (1-based)
    epoch: int = 1
    batch_in_epoch: int = 0
    #: the sampler's state of a resumed mid-epoch checkpoint, used once
    sampler_state: Optional[dict] = None
    #: the random generators' states of a resumed checkpoint, set once the epoch's loader
    #: iterator exists (creating it draws from torch's generator)
    rng_state: Optional[dict] = None
    #: the resumed epoch's running loss sums (its train loss covers the whole epoch)
    epoch_sums: Optional[dict] = None
