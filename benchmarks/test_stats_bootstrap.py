"""Bootstrap speed: 10,000 resamples of 5,000 utterances x 3 seeds, one core.

Target (issue 19): ``summarize`` of a row plus ``compare`` of that row with its
baseline in under 2 s on one core, in the worst case for the block draws (every
utterance its own speaker block: 5,000 blocks per resample). The target is checked
on the process's CPU time (all its threads added up, so it is a one-core figure
even where BLAS runs threads, and it does not count time lost to other processes
on a shared machine); pytest-benchmark's table shows the wall time beside it. Run
with ``make bench`` (or ``pytest benchmarks/test_stats_bootstrap.py --benchmark-enable``).
"""
import time

import numpy as np
import pytest

N_UTTS, N_SEEDS, RESAMPLES = 5_000, 3, 10_000


@pytest.fixture(scope="module")
def rows():
    rng = np.random.default_rng(0)
    ref_len = 5 + rng.poisson(15, N_UTTS)
    p = 0.1 * 2 * rng.beta(2, 2, N_UTTS)
    row = rng.binomial(ref_len, p, size=(N_SEEDS, N_UTTS))
    base = rng.binomial(ref_len, 1.1 * p, size=(N_SEEDS, N_UTTS))
    return row, base, ref_len


def test_summarize_and_compare_10000_resamples_5000_utts_3_seeds_under_2s(benchmark, rows):
    from harness.stats import compare, summarize

    row, base, ref_len = rows
    seeds = [1, 2, 3]
    cpu: list[float] = []

    def run():
        start = time.process_time()
        out = (summarize(row, ref_len, resamples=RESAMPLES),
               compare(row, base, ref_len, seeds_row=seeds, seeds_base=seeds, resamples=RESAMPLES))
        cpu.append(time.process_time() - start)
        return out

    summary, comparison = benchmark.pedantic(run, rounds=3, iterations=1)
    benchmark.extra_info.update(cpu_seconds=cpu, wer=summary.ci.point, delta=comparison.delta)
    print(f"\nsummarize + compare: cpu {', '.join(f'{c:.3f}' for c in cpu)} s per round")
    assert summary.n_seeds == N_SEEDS and comparison.n_pairs == N_SEEDS
    assert min(cpu) < 2.0, cpu
