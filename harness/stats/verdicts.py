"""Verdicts on a difference's interval, and how many seeds would resolve it."""
from __future__ import annotations

import math
from statistics import NormalDist

from .intervals import Comparison, Interval

HOLDS = "holds"
REVERSED = "reversed"
NOT_RESOLVED = "not resolved"
BETTER = "better"
WORSE = "worse"
#: verdicts where the paper reports the same difference
PAPER_VERDICTS = (HOLDS, REVERSED, NOT_RESOLVED)
#: verdicts where it does not
PLAIN_VERDICTS = (BETTER, WORSE, NOT_RESOLVED)
VERDICTS = (HOLDS, REVERSED, BETTER, WORSE, NOT_RESOLVED)


def verdict(comparison_or_ci: Comparison | Interval, paper_delta: float | None) -> str:
    """The verdict on a difference (row - baseline; negative = the row is better).

    With the paper's difference: ``holds`` (the interval excludes 0 on the paper's
    side), ``reversed`` (excludes 0 on the other side), else ``not resolved``. Without
    it (or with a paper difference of exactly 0, which has no sign): ``better``
    (interval entirely below 0), ``worse`` (entirely above), else ``not resolved``.
    """
    ci = comparison_or_ci.ci if isinstance(comparison_or_ci, Comparison) else comparison_or_ci
    if not isinstance(ci, Interval):
        raise TypeError(f"verdict: expected a Comparison or an Interval, got {type(comparison_or_ci).__name__}")
    if not ci.excludes_zero():
        return NOT_RESOLVED
    if paper_delta is None or paper_delta == 0:
        return BETTER if ci.hi < 0 else WORSE
    return HOLDS if (ci.hi < 0) == (paper_delta < 0) else REVERSED


def seeds_to_resolve(observed_delta: float, per_seed_sd: float, within_half_width: float,
                     n_seeds_now: int, level: float = 0.95, max_seeds: int = 100) -> int | None:
    """How many seeds (in total) would make the difference's interval exclude 0.

    Model of the interval's half-width with ``n`` paired seeds::

        h(n) = sqrt(z**2 * per_seed_sd**2 / n + within_half_width**2),  z = Phi^-1((1 + level) / 2)

    ``per_seed_sd``: standard deviation over seeds of the per-seed difference (the
    seed-level variance shrinks as 1/n); ``within_half_width``: the half-width from
    resampling the test set's speaker blocks alone (``Comparison.within_ci``), which
    more seeds cannot shrink because every seed decodes the same test set.
    ``h(n) < |observed_delta|`` gives ``n > z**2 per_seed_sd**2 / (delta**2 - within_half_width**2)``.

    Returns the smallest such ``n``, never fewer than ``n_seeds_now``; None when the
    delta is 0, when the test set alone is too small (``within_half_width >= |delta|``),
    or when it would take more than ``max_seeds``.
    """
    if n_seeds_now < 1:
        raise ValueError(f"n_seeds_now: must be >= 1, got {n_seeds_now}")
    if per_seed_sd < 0 or within_half_width < 0:
        raise ValueError("per_seed_sd and within_half_width must be >= 0")
    d2 = observed_delta ** 2
    w2 = within_half_width ** 2
    if observed_delta == 0 or w2 >= d2:
        return None
    z = NormalDist().inv_cdf((1 + level) / 2)
    need = max(1, math.floor(z * z * per_seed_sd ** 2 / (d2 - w2)) + 1)
    need = max(need, n_seeds_now)
    return need if need <= max_seeds else None
