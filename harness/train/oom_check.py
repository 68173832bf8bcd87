"""The OOM check at the start of training: the sampler's largest batches run forward and
backward once, and if one does not fit, a binary search says which ``data.max_duration`` would."""
from __future__ import annotations

import logging
from typing import Any, Callable

import torch


class OutOfMemoryAtStartError(RuntimeError):
    """The largest batches the sampler can produce do not fit on the device."""


def check_oom(train_dl: Any, try_batch: Callable[[dict], None], optimizer: Any, device: torch.device,
              max_duration: float, log: logging.Logger) -> None:
    """Run the sampler's largest batches once through ``try_batch`` (forward and backward);
    on OOM say which max duration would fit."""
    if device.type != "cuda":
        log.info("OOM check skipped: it guards GPU memory and this cell trains on %s", device)
        return
    from lhotse.dataset import find_pessimistic_batches

    batches, _ = find_pessimistic_batches(train_dl.sampler)
    for criterion, cuts in batches.items():
        try:
            try_batch(train_dl.dataset[cuts])
        except torch.cuda.OutOfMemoryError:
            optimizer.zero_grad(set_to_none=True)
            torch.cuda.empty_cache()
            fits = largest_fitting_batch(train_dl, cuts, try_batch, optimizer)
            dur = sum(c.duration for c in cuts)
            raise OutOfMemoryAtStartError(
                f"out of memory on {torch.cuda.get_device_name(device)} with the sampler's "
                f"largest batch ({criterion}, {dur:.0f} s of audio, data.max_duration="
                f"{max_duration}); "
                + (f"about {fits:.0f} s fit: set data.max_duration to {0.9 * fits:.0f} or less"
                   if fits else "not even one utterance fits")) from None
    optimizer.zero_grad(set_to_none=True)
    log.info("OOM check passed on the %d largest batches", len(batches))


def largest_fitting_batch(train_dl: Any, cuts: Any, try_batch: Callable[[dict], None], optimizer: Any) -> float:
    """Audio seconds of the largest shortest-first part of the OOM batch ``cuts`` that fits."""
    from lhotse import CutSet

    def fits(part: list) -> bool:
        try:
            try_batch(train_dl.dataset[CutSet.from_cuts(part)])
            return True
        except torch.cuda.OutOfMemoryError:
            optimizer.zero_grad(set_to_none=True)
            torch.cuda.empty_cache()
            return False

    return largest_fitting_duration(list(cuts), fits)


def largest_fitting_duration(cuts: list, fits: Callable[[list], bool]) -> float:
    """Binary search for the most shortest-first cuts that ``fits``; their total duration.

    The whole list is known not to fit; 0.0 if not even the shortest cut does.
    """
    items = sorted(cuts, key=lambda c: c.duration)
    lo, hi = 0, len(items) - 1
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if fits(items[:mid]):
            lo = mid
        else:
            hi = mid - 1
    return float(sum(c.duration for c in items[:lo]))
