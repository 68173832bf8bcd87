"""NIST sclite's matched-pairs sentence-segment word error test (MAPSSWE).

Gillick & Cox (1989), as implemented in sclite: for each segment ``i`` the
difference ``Z_i`` of the two systems' error counts; ``mu`` their mean, ``s`` their
sample standard deviation (n - 1); ``W = mu / (s / sqrt(n))`` is standard normal
under the null hypothesis of equal error rates, and the two-sided p-value is
``erfc(|W| / sqrt(2))``. Here a segment is an utterance (sclite cuts segments at
words both systems got right; utterances are coarser, which only makes the test
more conservative where errors within an utterance are correlated).
"""
from __future__ import annotations

import math

import numpy as np


def mapsswe_p(differences) -> float | None:
    """Two-sided p-value of the matched-pairs test on per-segment error differences.

    1.0 when every difference is zero; None when the test is undefined (fewer than two
    segments, or the differences are all equal but not zero: zero variance).
    """
    z = np.asarray(differences, dtype=np.float64).ravel()
    if z.size < 2:
        return None
    if not np.any(z):
        return 1.0
    mu = float(z.mean())
    sd = float(z.std(ddof=1))
    if sd <= 1e-12 * float(np.abs(z).max()):  # equal differences up to rounding
        return None
    w = mu / (sd / math.sqrt(z.size))
    return math.erfc(abs(w) / math.sqrt(2.0))
