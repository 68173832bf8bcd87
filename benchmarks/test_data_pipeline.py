"""Data-pipeline speed on this machine.

    python3 -m pytest benchmarks/test_data_pipeline.py --benchmark-enable -s

prints and records (``extra_info``):
- fbank extraction: seconds of compute per hour of audio (lhotse Fbank, 80 bins),
  alone and with FLAC decoding + lilcom storage as preparation runs it;
- data-loader throughput: hours of audio per second delivered as training
  batches (precomputed features + SpecAugment, and on-the-fly fbank), with 0
  and 2 worker processes.
One CPU thread per process, as in preparation and training workers.
"""
from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """~3 min of synthetic training speech (x3 with speed perturbation), prepared."""
    from harness.data import prepare_corpus

    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("bench") / "corpus"
    return prepare_corpus("synthetic", out, tier="tiny", hours=0.05, seed=0, num_jobs=2, progress=False)


def _report(benchmark, name: str, value: float, unit: str) -> None:
    benchmark.extra_info[name] = round(value, 4)
    print(f"\n{name}: {value:.4f} {unit}")


def _mean(benchmark) -> float | None:
    stats = getattr(benchmark, "stats", None)
    return stats.stats.mean if stats is not None else None


def test_fbank_seconds_per_hour(benchmark, corpus):
    from lhotse import load_manifest

    from harness.data.features import fbank_extractor

    extractor = fbank_extractor()
    cuts = [c for c in load_manifest(corpus.splits["dev"])]
    audio = [c.load_audio()[0] for c in cuts]
    seconds = sum(a.size for a in audio) / 16000

    def run():
        for a in audio:
            extractor.extract(a, 16000)

    benchmark.pedantic(run, rounds=3, iterations=1, warmup_rounds=1)
    mean = _mean(benchmark)
    if mean is not None:
        _report(benchmark, "fbank_seconds_per_hour", mean * 3600 / seconds, "s per hour of audio")


def test_fbank_decode_and_store_seconds_per_hour(benchmark, corpus, tmp_path):
    from lhotse import load_manifest

    from harness.data.features import compute_features, cuts_from_manifests

    cuts = load_manifest(corpus.splits["dev"]).drop_features()
    seconds = sum(c.duration for c in cuts)
    counter = iter(range(10**6))
    benchmark.pedantic(lambda: compute_features(cuts, tmp_path / f"f{next(counter)}", num_jobs=1),
                       rounds=3, iterations=1)
    mean = _mean(benchmark)
    if mean is not None:
        _report(benchmark, "fbank_decode_store_seconds_per_hour", mean * 3600 / seconds,
                "s per hour of audio (FLAC decode + fbank + lilcom)")
    assert cuts_from_manifests  # the same code path preparation uses


@pytest.mark.parametrize("workers", [0, 2])
@pytest.mark.parametrize("on_the_fly", [False, True], ids=["precomputed", "on_the_fly"])
def test_loader_hours_per_second(benchmark, corpus, workers, on_the_fly):
    from lhotse import load_manifest

    from harness.data import batch_lengths, make_dataloader

    cuts = load_manifest(corpus.splits["train"])
    loader = make_dataloader(cuts, max_duration=100.0, train=True, num_workers=workers,
                             on_the_fly_features=on_the_fly)
    state = {"seconds": 0.0, "epoch": 0}

    def epoch():
        loader.sampler.set_epoch(state["epoch"])
        state["epoch"] += 1
        total = 0.0
        for batch in loader:
            total += float(batch_lengths(batch).sum()) / 100.0
        state["seconds"] = total

    benchmark.pedantic(epoch, rounds=2, iterations=1)
    assert state["seconds"] > 0
    mean = _mean(benchmark)
    if mean is not None:
        _report(benchmark, "loader_hours_per_second", state["seconds"] / 3600 / mean,
                f"h of audio per s ({'on-the-fly' if on_the_fly else 'precomputed'}, {workers} workers)")
        benchmark.extra_info["realtime_factor"] = round(state["seconds"] / mean, 1)

