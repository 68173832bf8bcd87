"""Both sides of the paper's optimizer switch (Table 5: Adam vs ScaledAdam).

- ``optimizer: scaled_adam`` -> :class:`ScaledAdam` (lr 0.045) with the
  :class:`Eden` schedule (paper section 3.5, Algorithm 1, eq. 8);
- ``optimizer: adam`` -> ``torch.optim.Adam`` (lr = the Noam base 7.5, betas
  (0.9, 0.98), eps 1e-9 as in Gulati et al.) with the :class:`Noam` schedule
  (section 4.0.3); its fused kernel on the CPU (:class:`.adam.Adam`).

    >>> opt = build_optimizer("scaled_adam", model)
    >>> sched = build_scheduler(default_scheduler_for("scaled_adam"), opt)
    >>> # per batch: loss.backward(); opt.step(); opt.zero_grad(); sched.step_batch(n_done)
    >>> # per epoch start: sched.step_epoch(epochs_done)

The optimizer's ``lr`` is the schedule's peak / base value; attach the
schedule before the first step (it writes the batch-0 value at once).
"""
from __future__ import annotations

import inspect
import math
import numbers
from typing import Any, Iterable

import torch
from torch import nn

from ..tensor_bytes import tensor_bytes
from .adam import Adam
from .eden import EDEN_DEFAULTS, Eden, eden_factor, eden_lr
from .grad_clipping import ClippingEvent, MedianGradClipping
from .lr_schedule import BatchEpochSchedule
from .noam import NOAM_DEFAULTS, Noam, noam_factor, noam_lr
from .param_groups import named_parameter_groups
from .scaled_adam import SCALED_ADAM_DEFAULTS, ScaledAdam

__all__ = [
    "OPTIMIZERS", "SCHEDULERS", "DEFAULT_LR", "build_optimizer", "build_scheduler",
    "default_scheduler_for", "schedule_curve", "ScaledAdam", "Eden", "Noam",
    "BatchEpochSchedule", "MedianGradClipping", "ClippingEvent", "eden_lr", "eden_factor",
    "noam_lr", "noam_factor", "named_parameter_groups", "optimizer_state_bytes",
]

OPTIMIZERS: tuple[str, ...] = ("scaled_adam", "adam")
SCHEDULERS: tuple[str, ...] = ("eden", "noam")
#: the paper's best base learning rates (section 4.0.3)
DEFAULT_LR: dict[str, float] = {"scaled_adam": SCALED_ADAM_DEFAULTS["lr"], "adam": NOAM_DEFAULTS["base"]}
#: Adam settings of the baseline (Gulati et al., 2020, whose Noam schedule the paper follows)
ADAM_DEFAULTS: dict[str, Any] = {"betas": (0.9, 0.98), "eps": 1e-9}

_SCHEDULE_CLASSES: dict[str, type[BatchEpochSchedule]] = {"eden": Eden, "noam": Noam}
_DEFAULT_SCHEDULER = {"scaled_adam": "eden", "adam": "noam"}


def _check_name(kind: str, name: str, allowed: Iterable[str]) -> None:
    allowed = tuple(allowed)
    if name not in allowed:
        raise ValueError(f"unknown {kind} {name!r}; allowed: {', '.join(allowed)}")


def _check_kwargs(what: str, fn: Any, kwargs: dict[str, Any], skip: tuple[str, ...]) -> None:
    params = [n for n in inspect.signature(fn).parameters if n not in skip]
    bad = sorted(set(kwargs) - set(params))
    if bad:
        raise ValueError(f"{what}: unknown argument(s) {bad}; allowed: {', '.join(params)}")


def _param_groups(model_or_params: Any, lr: float, lr_scales: dict[str, float] | None) -> list:
    if isinstance(model_or_params, nn.Module):
        return named_parameter_groups(model_or_params, lr, lr_scales)
    if lr_scales:
        raise ValueError("lr_scales needs a module (names come from its named_parameters()); "
                         "got an iterable of parameters")
    params = list(model_or_params)
    if not params:
        raise ValueError("build_optimizer got an empty parameter list")
    return params


def build_optimizer(name: str, model_or_params: Any, lr: float | None = None,
                    lr_scales: dict[str, float] | None = None, **kwargs: Any) -> torch.optim.Optimizer:
    """The optimizer named ``name`` ("scaled_adam" or "adam") over a module or parameters.

    ``lr`` defaults to the paper's base value (0.045 / 7.5). A module gives named
    parameter groups (``lr_scales`` and modules' ``lr_scale`` attributes scale
    some modules' lr); parameters, ``(name, p)`` pairs or group dicts are passed
    through. ``kwargs`` go to :class:`ScaledAdam` or ``torch.optim.Adam``.
    """
    _check_name("optimizer", name, OPTIMIZERS)
    lr = DEFAULT_LR[name] if lr is None else lr
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not math.isfinite(lr) or lr <= 0:
        raise ValueError(f"lr must be a finite number > 0, got {lr!r}")
    groups = _param_groups(model_or_params, float(lr), lr_scales)
    if name == "scaled_adam":
        _check_kwargs("build_optimizer('scaled_adam')", ScaledAdam.__init__, kwargs, ("self", "params", "lr"))
        return ScaledAdam(groups, lr=lr, **kwargs)
    _check_kwargs("build_optimizer('adam')", torch.optim.Adam.__init__, kwargs, ("self", "params", "lr"))
    return Adam(groups, lr=lr, **{**ADAM_DEFAULTS, **kwargs})


def default_scheduler_for(optimizer_name: str) -> str:
    """"eden" for scaled_adam, "noam" for adam (the paper's pairings)."""
    _check_name("optimizer", optimizer_name, OPTIMIZERS)
    return _DEFAULT_SCHEDULER[optimizer_name]


def build_scheduler(name: str, optimizer: torch.optim.Optimizer, **kwargs: Any) -> BatchEpochSchedule:
    """The schedule named ``name`` ("eden" or "noam") driving ``optimizer``.

    Eden takes lr_batches, lr_epochs, warmup_batches, warmup_start; Noam takes
    d_model, warmup. Both have ``step_batch``, ``step_epoch``, ``get_last_lr``,
    ``state_dict`` and ``load_state_dict``.
    """
    _check_name("scheduler", name, SCHEDULERS)
    cls = _SCHEDULE_CLASSES[name]
    _check_kwargs(f"build_scheduler({name!r})", cls.__init__, kwargs, ("self", "optimizer"))
    return cls(optimizer, **kwargs)


def schedule_curve(name: str, steps: Iterable[int], **kw: Any) -> list[tuple[int, float]]:
    """``[(step, lr), ...]`` of a schedule, for plotting (Figure A.2, right).

    eden: kwargs base_lr, lr_batches, lr_epochs, warmup_batches, warmup_start and
    ``batches_per_epoch`` (required): the epoch at a step is the number of
    completed epochs, ``step // batches_per_epoch``, as a training loop sees it.
    noam: kwargs base, d_model, warmup; the step is the 1-based update index.
    """
    _check_name("schedule", name, SCHEDULERS)
    steps = list(steps)
    for s in steps:
        if isinstance(s, bool) or not isinstance(s, numbers.Integral) or s < 0:
            raise ValueError(f"schedule_curve: steps must be integers >= 0, got {s!r}")
    if name == "noam":
        _check_kwargs("schedule_curve('noam')", noam_lr, kw, ("step",))
        return [(int(s), noam_lr(s, **kw)) for s in steps]
    kw = dict(kw)
    if "batches_per_epoch" not in kw:
        raise ValueError("schedule_curve('eden') needs batches_per_epoch (to derive the epoch "
                         "from the step)")
    per_epoch = kw.pop("batches_per_epoch")
    if isinstance(per_epoch, bool) or not isinstance(per_epoch, (int, float)) or not per_epoch > 0:
        raise ValueError(f"batches_per_epoch must be a number > 0, got {per_epoch!r}")
    _check_kwargs("schedule_curve('eden')", eden_lr, kw, ("batch", "epoch"))
    return [(int(s), eden_lr(s, math.floor(s / per_epoch), **kw)) for s in steps]


def optimizer_state_bytes(optimizer: torch.optim.Optimizer) -> int:
    """Total bytes of the tensors held in ``optimizer.state`` (nested dicts included)."""
    return sum(tensor_bytes(v) for v in optimizer.state.values())
