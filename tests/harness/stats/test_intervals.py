"""Bootstrap intervals: coverage of a known difference, identical and clearly different
systems, speaker blocks, seeds and pairing, determinism, memory."""
from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from harness.stats import NOT_RESOLVED, compare, summarize, verdict
from support.simulate import simulate

RATE_A, RATE_B = 0.10, 0.12


def test_paired_ci_covers_the_true_difference_in_95_percent_of_experiments():
    # 400 experiments of 100 speakers x 10 utterances; the truth is the generating
    # model's population difference (simulate.py). Measured over 12 master seeds
    # (4,800 experiments): mean coverage 95.1 %, every seed within 93-97 %.
    rng = np.random.default_rng(0)
    truth = 100 * (RATE_A - RATE_B)
    covered = 0
    for i in range(400):
        (a, b), ref_len, spk = simulate(rng, (RATE_A, RATE_B))
        c = compare(a, b, ref_len, spk, resamples=1000, seed=i)
        covered += c.ci.lo <= truth <= c.ci.hi
    assert 0.93 <= covered / 400 <= 0.97, covered / 400


def test_identical_systems_are_not_resolved_with_p_improvement_one_half():
    (a,), ref_len, spk = simulate(np.random.default_rng(1), (RATE_A,))
    c = compare(a, a.copy(), ref_len, spk, resamples=2000)
    assert c.delta == 0 and c.ci.lo == c.ci.hi == 0
    assert c.p_improvement == 0.5  # every resample a tie
    assert c.mapsswe_p == 1.0
    assert verdict(c, None) == verdict(c, -0.1) == NOT_RESOLVED


def test_systems_with_equal_rates_are_mostly_not_resolved_and_p_improvement_centres_on_one_half():
    rng = np.random.default_rng(2)
    results = []
    for i in range(60):
        (a, b), ref_len, spk = simulate(rng, (RATE_A, RATE_A), n_speakers=40)
        results.append(compare(a, b, ref_len, spk, resamples=500, seed=i))
    unresolved = np.mean([verdict(c, None) == NOT_RESOLVED for c in results])
    assert unresolved >= 0.85, unresolved
    assert abs(np.mean([c.p_improvement for c in results]) - 0.5) < 0.1


def test_a_clear_difference_gets_better_worse_holds_reversed():
    (a, b), ref_len, spk = simulate(np.random.default_rng(3), (0.08, 0.12), n_speakers=200)
    c = compare(a, b, ref_len, spk, resamples=2000)
    assert c.ci.hi < 0 and c.p_improvement > 0.99 and c.mapsswe_p < 1e-6
    assert verdict(c, None) == "better"
    assert verdict(c, -0.2) == "holds"
    assert verdict(c, 0.2) == "reversed"
    worse = compare(b, a, ref_len, spk, resamples=2000)
    assert worse.ci.lo > 0 and worse.p_improvement < 0.01
    assert verdict(worse, None) == "worse"
    assert verdict(worse, -0.2) == "reversed"
    assert verdict(worse, 0.2) == "holds"


def test_speaker_correlated_errors_widen_the_blockwise_interval():
    (a,), ref_len, spk = simulate(np.random.default_rng(4), (RATE_A,), n_speakers=50, per_speaker=20)
    blocks = summarize(a, ref_len, spk, resamples=2000).ci.half_width
    utts = summarize(a, ref_len, None, resamples=2000).ci.half_width
    assert blocks > 1.5 * utts, (blocks, utts)
    # without a speaker effect the blocks change little
    (a,), ref_len, spk = simulate(np.random.default_rng(4), (RATE_A,), n_speakers=50, per_speaker=20,
                                  speaker_spread=0.0)
    ratio = summarize(a, ref_len, spk, resamples=2000).ci.half_width / summarize(a, ref_len, None,
                                                                                 resamples=2000).ci.half_width
    assert 0.75 < ratio < 1.33, ratio


def test_one_utterance_per_speaker_is_the_utterance_level_bootstrap():
    (a,), ref_len, _ = simulate(np.random.default_rng(5), (RATE_A,))
    labels = [f"u{i}" for i in range(a.size)]
    assert summarize(a, ref_len, labels, resamples=500) == summarize(a, ref_len, None, resamples=500)


def test_seed_noise_widens_the_two_level_interval_and_the_summary_reports_the_seeds():
    rng = np.random.default_rng(6)
    (quiet,), ref_len, spk = simulate(rng, (RATE_A,), seed_offsets=[0.0, 0.0, 0.0])
    (noisy,), _, _ = simulate(np.random.default_rng(6), (RATE_A,), seed_offsets=[-0.3, 0.0, 0.3])
    q = summarize(quiet, ref_len, spk, resamples=2000)
    n = summarize(noisy, ref_len, spk, resamples=2000)
    assert n.n_seeds == 3 and n.n_utts == ref_len.size and len(n.per_seed) == 3
    assert n.std > 3 * q.std
    assert n.ci.half_width > 1.3 * q.ci.half_width
    assert n.mean == pytest.approx(np.mean(n.per_seed)) == pytest.approx(n.ci.point)
    assert n.std == pytest.approx(np.std(n.per_seed, ddof=1))


def test_pairing_equal_seeds_narrows_the_paired_interval_when_seeds_share_noise():
    (row, base), ref_len, spk = simulate(np.random.default_rng(7), (RATE_A, RATE_B),
                                         seed_offsets=[-0.3, 0.0, 0.3])
    paired = compare(row, base, ref_len, spk, seeds_row=[1, 2, 3], seeds_base=[1, 2, 3], resamples=2000)
    apart = compare(row, base, ref_len, spk, seeds_row=[1, 2, 3], seeds_base=[4, 5, 6], resamples=2000)
    assert paired.n_pairs == 3 and apart.n_pairs == 0
    assert paired.delta == pytest.approx(apart.delta)
    assert paired.ci.half_width < 0.7 * apart.ci.half_width
    assert paired.seed_sd < apart.seed_sd
    # two labels in common: only those seeds are paired and enter the difference
    some = compare(row, base, ref_len, spk, seeds_row=[1, 2, 3], seeds_base=[2, 3, 9], resamples=500)
    assert some.n_pairs == 2
    two = compare(row[1:], base[:2], ref_len, spk, seeds_row=[2, 3], seeds_base=[2, 3], resamples=500)
    assert some.delta == pytest.approx(two.delta)
    # without labels: by position when the counts agree, else independent over all seeds
    assert compare(row, base, ref_len, spk, resamples=500) == compare(
        row, base, ref_len, spk, seeds_row=[1, 2, 3], seeds_base=[1, 2, 3], resamples=500)
    unlabelled = compare(row[:1], base, ref_len, spk, resamples=500)
    assert unlabelled.n_pairs == 0
    assert unlabelled.delta == pytest.approx(100 * (row[0].sum() - base.sum() / 3) / ref_len.sum())
    # pairing is by label, not position
    shuffled = compare(row[[2, 0, 1]], base, ref_len, spk, seeds_row=[3, 1, 2], seeds_base=[1, 2, 3],
                       resamples=500)
    assert shuffled == compare(row, base, ref_len, spk, seeds_row=[1, 2, 3], seeds_base=[1, 2, 3],
                               resamples=500)


def test_within_interval_is_the_test_set_part_of_the_uncertainty():
    (row, base), ref_len, spk = simulate(np.random.default_rng(8), (RATE_A, RATE_B),
                                         seed_offsets=[-0.3, 0.0, 0.3, 0.1])
    c = compare(row, base, ref_len, spk, seeds_row=[0, 1, 2, 3], seeds_base=[3, 1, 2, 0], resamples=2000)
    assert c.within_ci.point == c.delta
    assert c.within_ci.half_width < c.ci.half_width


def test_deterministic_for_a_seed_and_one_dimensional_input_is_one_seed():
    (a, b), ref_len, spk = simulate(np.random.default_rng(9), (RATE_A, RATE_B), n_speakers=30)
    assert summarize(a, ref_len, spk, seed=3) == summarize(a, ref_len, spk, seed=3)
    assert summarize(a, ref_len, spk, seed=3) != summarize(a, ref_len, spk, seed=4)
    assert compare(a, b, ref_len, spk, seed=3) == compare(a, b, ref_len, spk, seed=3)
    assert summarize(a, ref_len, spk, seed=3) == summarize(a[None, :], ref_len, spk, seed=3)
    assert compare(a, b, ref_len, spk, seed=3) == compare(a[None, :], b[None, :], ref_len, spk, seed=3)
    one = summarize(a, ref_len, spk)
    assert one.n_seeds == 1 and one.std == 0.0
    assert one.ci.point == pytest.approx(100 * a.sum() / ref_len.sum())


def test_large_counts_take_the_float64_path_with_the_same_intervals():
    (a, b), ref_len, spk = simulate(np.random.default_rng(10), (RATE_A, RATE_B), n_speakers=30)
    small = compare(a, b, ref_len, spk, resamples=300)
    big = compare(a * 100_000, b * 100_000, ref_len * 100_000, spk, resamples=300)
    for x, y in ((small.ci.lo, big.ci.lo), (small.ci.hi, big.ci.hi), (small.p_improvement, big.p_improvement)):
        assert x == pytest.approx(y, rel=1e-9)


def test_memory_stays_bounded_for_10000_resamples_of_5000_utterances_by_3_seeds():
    (row, base), ref_len, spk = simulate(np.random.default_rng(11), (RATE_A, RATE_B), n_speakers=5000,
                                         per_speaker=1, seed_offsets=[0.0, 0.1, 0.2])
    tracemalloc.start()
    try:
        compare(row, base, ref_len, None, resamples=3000)  # chunked: the peak does not grow with resamples
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 200 * 2 ** 20, peak / 2 ** 20


@pytest.mark.parametrize("call, match", [
    (lambda: summarize(np.ones((2, 3)), [1, 1]), "ref_len"),
    (lambda: summarize(-np.ones(3), [1, 1, 1]), "errors"),
    (lambda: summarize(np.ones(3), [0, 0, 0]), "ref_len"),
    (lambda: summarize(np.ones(3), [1, 1, 1], ["a", "b"]), "groups"),
    (lambda: summarize(np.ones(3), [1, 1, 1], resamples=0), "resamples"),
    (lambda: summarize(np.ones(3), [1, 1, 1], level=1.0), "level"),
    (lambda: compare(np.ones(3), np.ones(4), [1, 1, 1]), "different numbers of utterances"),
    (lambda: compare(np.ones((2, 3)), np.ones(3), [1, 1, 1], seeds_row=[1], seeds_base=[1]), "seeds_row"),
    (lambda: compare(np.ones((2, 3)), np.ones((2, 3)), [1, 1, 1], seeds_row=[1, 1], seeds_base=[1, 2]),
     "distinct"),
    (lambda: compare(np.ones(3), np.ones(3), [1, 1, 1], seeds_row=[1]), "both rows or of neither"),
])
def test_bad_input_is_a_value_error_naming_the_argument(call, match):
    with pytest.raises(ValueError, match=match):
        call()
