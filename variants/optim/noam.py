"""Noam, the learning-rate schedule of the Adam baseline (paper section 4.0.3).

    lr = base * d_model^-0.5 * min(t^-0.5, t * warmup^-1.5)

with ``t`` the 1-based index of the update, base 7.5, d_model 512 and 10000
warm-up steps (the paper, following Gulati et al., 2020). The peak is at
``t = warmup``.
"""
from __future__ import annotations

from typing import Any

from torch.optim import Optimizer

from .lr_schedule import BatchEpochSchedule, check_count, check_positive

NOAM_DEFAULTS: dict[str, float] = {"base": 7.5, "d_model": 512.0, "warmup": 10000.0}


def noam_factor(step: float, d_model: float = 512, warmup: float = 10000) -> float:
    """``d_model^-0.5 * min(step^-0.5, step * warmup^-1.5)``; 0 at step 0."""
    step = check_count("step", step)
    d_model = check_positive("d_model", d_model)
    warmup = check_positive("warmup", warmup)
    if step == 0:
        return 0.0
    return d_model ** -0.5 * min(step ** -0.5, step * warmup ** -1.5)


def noam_lr(step: float, base: float = 7.5, d_model: float = 512, warmup: float = 10000) -> float:
    """The Noam learning rate at (1-based) update ``step``."""
    return check_positive("base", base) * noam_factor(step, d_model, warmup)


class Noam(BatchEpochSchedule):
    """Noam driving an optimizer: each group's lr is ``base_lr * noam_factor(t)``.

    The optimizer's own ``lr`` is the Noam ``base`` (7.5 in the paper). After
    ``step_batch(n)`` (n batches trained) the next update is update ``n + 1``, so
    the lr set is ``noam_lr(n + 1)``: the first update never gets lr 0.
    Epochs are accepted and ignored (Noam depends on the step only).
    """

    name = "noam"

    def __init__(self, optimizer: Optimizer, d_model: float = 512, warmup: float = 10000) -> None:
        self.d_model = check_positive("d_model", d_model)
        self.warmup = check_positive("warmup", warmup)
        super().__init__(optimizer)

    def factor(self) -> float:
        return noam_factor(self.batch + 1, self.d_model, self.warmup)

    def hyperparameters(self) -> dict[str, Any]:
        return {"d_model": self.d_model, "warmup": self.warmup}
