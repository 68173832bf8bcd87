"""Verdicts, MAPSSWE against hand-computed cases, and seeds_to_resolve."""
from __future__ import annotations

import math

import numpy as np
import pytest

from harness.stats import (BETTER, HOLDS, NOT_RESOLVED, PAPER_VERDICTS, PLAIN_VERDICTS, REVERSED, VERDICTS,
                           WORSE, Comparison, Interval, compare, mapsswe_p, seeds_to_resolve, verdict)


@pytest.mark.parametrize("lo, hi, paper, expected", [
    (-0.5, -0.1, -0.1, HOLDS), (0.1, 0.5, 0.1, HOLDS),
    (-0.5, -0.1, 0.1, REVERSED), (0.1, 0.5, -0.1, REVERSED),
    (-0.5, 0.1, -0.1, NOT_RESOLVED), (-0.5, 0.0, -0.1, NOT_RESOLVED),
    (-0.5, -0.1, None, BETTER), (0.1, 0.5, None, WORSE), (-0.1, 0.1, None, NOT_RESOLVED),
    (-0.5, -0.1, 0.0, BETTER),  # a zero paper difference has no sign
])
def test_verdict_of_an_interval(lo, hi, paper, expected):
    assert verdict(Interval((lo + hi) / 2, lo, hi), paper) == expected
    comparison = Comparison(delta=(lo + hi) / 2, ci=Interval((lo + hi) / 2, lo, hi), p_improvement=0.5,
                            mapsswe_p=None, n_pairs=1)
    assert verdict(comparison, paper) == expected
    assert expected in VERDICTS and expected in (PAPER_VERDICTS if paper else PLAIN_VERDICTS)


def test_half_width_is_the_smallest_resolvable_difference():
    assert Interval(1.0, 0.5, 1.7).half_width == pytest.approx(0.6)
    assert Interval(1.0, 0.5, 1.7).bounds == (0.5, 1.7)


def test_mapsswe_against_hand_computed_cases():
    # Z = 1, 2, 0, 3, -1: mean 1, sample variance 10/4, W = 1 / sqrt(2.5 / 5) = sqrt(2), p = erfc(1)
    assert mapsswe_p([1, 2, 0, 3, -1]) == pytest.approx(math.erfc(1.0), rel=1e-12)
    # Z = 2, 0, 1, 1: mean 1, sample variance 2/3, W = 1 / sqrt(2/3 / 4) = sqrt(6), p = erfc(sqrt(3))
    assert mapsswe_p([2, 0, 1, 1]) == pytest.approx(math.erfc(math.sqrt(3.0)), rel=1e-12)
    assert mapsswe_p([-2, 0, -1, -1]) == mapsswe_p([2, 0, 1, 1])
    assert mapsswe_p([0, 0, 0]) == 1.0
    assert mapsswe_p([1, 1, 1]) is None and mapsswe_p([3]) is None


def test_compare_applies_mapsswe_per_utterance_and_averages_paired_seeds():
    ref_len = np.full(5, 10)
    base = np.full(5, 2)
    row = base + np.array([1, 2, 0, 3, -1])
    assert compare(row, base, ref_len, resamples=10).mapsswe_p == pytest.approx(math.erfc(1.0))
    # two seeds: per-seed differences (2, 4, 0, 6, -2) and (0, 0, 0, 0, 0) average to the case above
    rows = np.array([base + [2, 4, 0, 6, -2], base])
    bases = np.array([base, base])
    assert compare(rows, bases, ref_len, resamples=10).mapsswe_p == pytest.approx(math.erfc(1.0))


def test_seeds_to_resolve_follows_its_formula():
    z2 = 1.959963984540054 ** 2
    # n > z^2 sd^2 / (d^2 - w^2)
    assert seeds_to_resolve(1.0, 1.0, 0.0, 1) == math.floor(z2) + 1 == 4
    assert seeds_to_resolve(-1.0, 1.0, 0.6, 1) == math.floor(z2 / 0.64) + 1 == 7
    assert seeds_to_resolve(1.0, 1.0, 0.0, 5) == 5  # already enough: the seeds already run
    assert seeds_to_resolve(1.0, 0.0, 0.5, 3) == 3
    assert seeds_to_resolve(0.5, 0.1, 0.5, 3) is None  # the test set alone cannot resolve it
    assert seeds_to_resolve(0.0, 0.1, 0.0, 3) is None
    assert seeds_to_resolve(0.1, 1.0, 0.0, 3) is None  # 385 seeds > max_seeds
    assert seeds_to_resolve(0.1, 1.0, 0.0, 3, max_seeds=1000) == 385
    assert seeds_to_resolve(1.0, 1.0, 0.0, 1, level=0.5) == 1
