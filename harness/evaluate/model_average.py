"""The authors' model averaging.

During training, rank 0 keeps ``model_avg`` (float64): every
``average_period`` steps ``avg = cur * (period / step) + avg * (1 - period /
step)``, i.e. the average of the weights since the start of training. At
decode time the average over epochs (start, end] is recovered from the two
running averages: ``(avg_end * end - avg_start * start) / (end - start)``
with ``end``/``start`` the steps rounded down to the period (the authors'
``--use-averaged-model``). Without it, the last K epoch checkpoints' weights
are averaged plainly.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import torch
from torch import nn

from . import checkpoint


def new_average(model: nn.Module) -> nn.Module:
    """A float64 copy of ``model`` on the CPU that holds the running average."""
    avg = copy.deepcopy(model).to(device="cpu", dtype=torch.float64)
    for p in avg.parameters():
        p.requires_grad_(False)
    return avg


@torch.no_grad()
def update_average(model_avg: nn.Module, model: nn.Module, step: int, period: int) -> None:
    """Fold ``model``'s weights into the running average at ``step`` (a multiple of ``period``)."""
    weight_cur = period / step
    cur = model.state_dict()
    for name, avg in model_avg.state_dict().items():
        if torch.is_floating_point(avg):
            avg.mul_(1.0 - weight_cur).add_(cur[name].detach().to(avg.device, avg.dtype), alpha=weight_cur)


def _rounded(step: int, period: int) -> int:
    return (step // period) * period


def average_between(start: Mapping | None, end: Mapping) -> dict[str, torch.Tensor]:
    """Weights averaged over the steps in (start, end] from two checkpoints' running averages.

    ``start`` None means the start of training (the end's running average is the answer).
    """
    period = int(end["average_period"])
    end_step = _rounded(int(end["step"]), period)
    avg_end = end["model_avg"]
    if start is None or _rounded(int(start["step"]), period) == 0:
        return {k: v.clone() for k, v in avg_end.items()}
    start_step = _rounded(int(start["step"]), period)
    interval = end_step - start_step
    if interval <= 0:
        raise ValueError(f"cannot average: start step {start_step} is not before end step {end_step}")
    w_end = end_step / interval
    w_start = 1.0 - w_end
    out = {}
    for k, v in avg_end.items():
        if torch.is_floating_point(v):
            # scaled as the authors do to avoid overflow: (end + start * ws/we) * we
            out[k] = (v + start["model_avg"][k] * (w_start / w_end)) * w_end
        else:
            out[k] = v.clone()
    return out


def average_plain(states: list[Mapping[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Element-wise mean of several models' state dicts (integer buffers from the last)."""
    out = {}
    for k, v in states[-1].items():
        if torch.is_floating_point(v):
            acc = torch.zeros_like(v, dtype=torch.float64)
            for s in states:
                acc += s[k].to(torch.float64)
            out[k] = (acc / len(states)).to(v.dtype)
        else:
            out[k] = v.clone()
    return out


@dataclass(frozen=True)
class Averaged:
    """Weights to decode with, and which checkpoints went into them."""

    weights: dict[str, torch.Tensor]
    #: e.g. "epochs 2-3 (running average of steps 40-80)" or "epochs 2, 3 (plain average)"
    note: str
    #: the optimizer step of the newest checkpoint averaged
    step: int
    #: the epochs actually averaged (fewer than asked when fewer exist; 1 after a fallback)
    avg: int = 1
    #: whether the running average was used (False after a fallback to plain weights)
    averaged_model: bool = False


def averaged_weights(ckpt_dir: Path, epoch: int, avg: int, use_averaged_model: bool) -> dict[str, torch.Tensor]:
    """The weights to decode with after ``epoch``: averaged over the last ``avg`` epochs."""
    return average_epochs(ckpt_dir, epoch, avg, use_averaged_model).weights


def average_epochs(ckpt_dir: Path, epoch: int, avg: int, use_averaged_model: bool) -> Averaged:
    """The weights after ``epoch`` averaged over the last ``avg`` epochs, and what was averaged.

    Never fails over averaging; what was done is in the result (``avg``, ``averaged_model``,
    and the note says why it differs from what was asked):

    - fewer than ``avg`` epochs up to ``epoch``: the ones that exist (``avg`` = their number);
    - ``use_averaged_model`` but the running average cannot cover the epochs (never updated:
      ``average_period`` above the steps trained; or no multiple of ``average_period`` between
      the start and end epochs' steps): the plain average of the same epochs' checkpoints.
    """
    epochs = checkpoint.epoch_checkpoints(ckpt_dir)
    if epoch not in epochs:
        raise FileNotFoundError(f"no checkpoint for epoch {epoch} in {ckpt_dir}; have {sorted(epochs)}")
    end = checkpoint.load(epochs[epoch])
    step = int(end["step"])
    period = int(end.get("average_period") or 1)
    why_plain = ""
    if use_averaged_model:
        start_epoch = epoch - avg
        start = checkpoint.load(epochs[start_epoch]) if start_epoch in epochs else None
        if end.get("model_avg") is None:
            why_plain = "the checkpoint holds no running average"
        elif _rounded(step, period) == 0:
            why_plain = (f"the running average was never updated: train.average_period {period} is more than "
                         f"the {step} step(s) trained; lower average_period")
        elif start is not None and 0 < _rounded(int(start["step"]), period) >= _rounded(step, period):
            why_plain = (f"no multiple of train.average_period {period} lies between the steps of epoch "
                         f"{start_epoch} ({int(start['step'])}) and epoch {epoch} ({step}), so the running "
                         f"average holds nothing of the last {avg} epoch(s); lower average_period (at most "
                         f"the steps of one epoch)")
        else:
            weights = average_between(start, end)
            model_keys = end["model"]
            first = start_epoch + 1 if start is not None else 1
            from_step = _rounded(int(start["step"]), period) if start is not None else 0
            span = f"epoch {epoch}" if first == epoch else f"epochs {first}-{epoch}"
            note = (f"{span} (running average of steps {from_step}-{_rounded(step, period)}"
                    + (f"; only {epoch - first + 1} epoch(s) exist" if epoch - first + 1 < avg else "") + ")")
            return Averaged({k: weights[k].to(model_keys[k].dtype) if torch.is_floating_point(model_keys[k])
                             else weights[k] for k in model_keys}, note, step, epoch - first + 1, True)
    chosen = [e for e in range(epoch - avg + 1, epoch + 1) if e in epochs]
    note = ("epoch " if len(chosen) == 1 else "epochs ") + ", ".join(map(str, chosen)) + (
        " (plain average" if len(chosen) > 1 else " (its own weights") + (
        f"; only {len(chosen)} epoch(s) exist" if len(chosen) < avg else "") + (
        f"; not the running average: {why_plain}" if why_plain else "") + ")"
    return Averaged(average_plain([checkpoint.load(epochs[e])["model"] for e in chosen]), note, step,
                    len(chosen), False)
