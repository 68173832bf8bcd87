"""The result types of ``harness.stats``: an interval, one row's summary, a paired comparison.

Every WER number (point, bounds, differences) is in percent.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Interval:
    """A point estimate with a percentile-bootstrap interval ``[lo, hi]``."""

    point: float
    lo: float
    hi: float

    @property
    def half_width(self) -> float:
        """Half the interval's width: the smallest difference this interval resolves."""
        return (self.hi - self.lo) / 2

    @property
    def bounds(self) -> tuple[float, float]:
        """``(lo, hi)``."""
        return (self.lo, self.hi)

    def excludes_zero(self) -> bool:
        return self.lo > 0 or self.hi < 0


@dataclass(frozen=True)
class RowSummary:
    """One row (cells that differ only by seed) on one test set and decoding method.

    ``mean``/``std``: over seeds of the per-seed WER (sample std, 0.0 for one seed);
    ``ci.point``: WER of the errors pooled over seeds (equal to ``mean``, since every
    seed decodes the same utterances); ``per_seed``: each seed's WER, in input order.
    """

    n_seeds: int
    n_utts: int
    mean: float
    std: float
    ci: Interval
    per_seed: tuple[float, ...] = ()


@dataclass(frozen=True)
class Comparison:
    """A row minus its baseline on the same utterances; a negative ``delta`` means the
    row makes fewer errors (better).

    ``ci``: two-level paired bootstrap (seeds, then speaker blocks) of the difference;
    ``p_improvement``: share of resamples in which the row's WER is below the
    baseline's (ties count half); ``mapsswe_p``: NIST's matched-pairs sentence-segment
    word error test (two-sided), None where undefined; ``n_pairs``: seeds paired by label
    (0 when the rows share none and their seeds were drawn independently).
    ``seed_sd``: sample std over the paired seeds of the per-seed difference (for
    independent seeds, sqrt(sd_row**2 + sd_base**2)); ``within_ci``: the difference's
    interval from the speaker-block resampling alone (seeds held fixed), i.e. the part
    of the uncertainty that more seeds cannot remove. Both feed ``seeds_to_resolve``.
    """

    delta: float
    ci: Interval
    p_improvement: float
    mapsswe_p: float | None
    n_pairs: int
    seed_sd: float = 0.0
    within_ci: Interval | None = None
