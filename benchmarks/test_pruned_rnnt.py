"""Pruned RNN-T loss vs the full joiner lattice vs the Zipformer-S encoder.

Targets, at B=8, T=500 encoder frames, S=100 tokens, vocabulary 500,
with the real Zipformer-S transducer heads (joiner 512, decoder 512):

- peak memory of the pruned loss (simple + pruned, joiner included, forward
  and backward) at least 10x below that of the full joiner lattice + full loss;
- its forward+backward time below one forward+backward of the Zipformer-S
  encoder on the same batch (8 x 2005 fbank frames -> 500 encoder frames).

    python3 -m pytest benchmarks/test_pruned_rnnt.py --benchmark-enable -s

Runs on the GPU when there is one (``HARNESS_BENCH_DEVICE=cpu`` forces the CPU) (peak memory from the CUDA allocator),
otherwise on the CPU (peak memory = the highest running total of the tensor
allocations and frees the PyTorch profiler records during the step). Both
targets are checked in one test, measured in the same process on the same
device.
"""
from __future__ import annotations

import gc
import os
import statistics
import time
from typing import Callable

import pytest
import torch

import variants
from harness.losses import make_boundary, rnnt_loss
from harness.losses.k2_backend import TORCH_BACKEND
from harness.losses.transducer_loss import transducer_losses

B, T, S, V = 8, 500, 100, 500
FEATS_T = 2005  # ((2005 - 7) // 2 + 1) // 2 = 500 encoder frames
PRUNE_RANGE = 5
MIN_MEMORY_RATIO = 10.0
#: HARNESS_BENCH_DEVICE=cpu forces the CPU on a machine with a GPU
DEVICE = torch.device(os.environ.get("HARNESS_BENCH_DEVICE") or ("cuda" if torch.cuda.is_available() else "cpu"))


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    torch.manual_seed(0)
    return variants.build_model("zipformer-s", objective="transducer").to(DEVICE).train()


@pytest.fixture(scope="module")
def batch(model):
    g = torch.Generator().manual_seed(1)
    enc = torch.randn(B, T, model.encoder_dim, generator=g).to(DEVICE).requires_grad_(True)
    enc_lens = torch.full((B,), T, dtype=torch.int64, device=DEVICE)
    y = torch.randint(1, V, (B, S), generator=g).to(DEVICE)
    y_lens = torch.full((B,), S, dtype=torch.int64, device=DEVICE)
    feats = torch.randn(B, FEATS_T, 80, generator=g).to(DEVICE)
    feat_lens = torch.full((B,), FEATS_T, dtype=torch.int64, device=DEVICE)
    return enc, enc_lens, y, y_lens, feats, feat_lens


def pruned_step(model, batch) -> None:
    """Simple + pruned loss (decoder and joiner included), forward and backward."""
    enc, enc_lens, y, y_lens = batch[:4]
    simple, pruned = transducer_losses(model, enc, enc_lens, y, y_lens, PRUNE_RANGE, 0.25, 0.0, TORCH_BACKEND)
    (0.5 * simple + pruned).backward()


def full_step(model, batch) -> None:
    """Full joiner on every (frame, token) pair + full RNN-T loss, forward and backward."""
    enc, enc_lens, y, y_lens = batch[:4]
    decoder_out = model.decoder(torch.nn.functional.pad(y, (1, 0), value=model.blank_id))
    logits = model.joiner(enc.unsqueeze(2), decoder_out.unsqueeze(1))  # (B, T, S+1, V)
    rnnt_loss(logits, y, model.blank_id, make_boundary(y_lens, enc_lens)).backward()


def encoder_step(model, batch) -> None:
    """Zipformer-S Conv-Embed + encoder, forward and backward."""
    feats, feat_lens = batch[4:]
    out, _ = model.forward_encoder(feats, feat_lens)
    out.square().mean().backward()


def _sync() -> None:
    if DEVICE.type == "cuda":
        torch.cuda.synchronize()


def _clean(model, batch) -> None:
    model.zero_grad(set_to_none=True)
    batch[0].grad = None
    gc.collect()
    if DEVICE.type == "cuda":
        torch.cuda.empty_cache()


def _profiled_peak(step: Callable, model, batch) -> int:
    """Highest running total of CPU tensor bytes allocated during ``step`` (profiler memory events)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step(model, batch)
    events = [e for e in prof.profiler.kineto_results.events()
              if e.name() == "[memory]" and e.device_type() == torch.autograd.DeviceType.CPU]
    current = peak = 0
    for e in sorted(events, key=lambda e: e.start_ns()):
        current += e.nbytes()
        peak = max(peak, current)
    return peak


def peak_bytes(step: Callable, model, batch) -> int:
    """Peak memory the step adds on top of what is already allocated."""
    _clean(model, batch)
    if DEVICE.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        step(model, batch)
        _sync()
        peak = torch.cuda.max_memory_allocated() - base
    else:
        peak = _profiled_peak(step, model, batch)
    _clean(model, batch)
    return peak


def median_seconds(step: Callable, model, batch, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        _clean(model, batch)
        _sync()
        t0 = time.perf_counter()
        step(model, batch)
        _sync()
        times.append(time.perf_counter() - t0)
    _clean(model, batch)
    return statistics.median(times)


def test_pruned_loss_forward_backward(benchmark, model, batch):
    pruned_step(model, batch)  # warm-up
    benchmark.pedantic(pruned_step, args=(model, batch), setup=lambda: _clean(model, batch),
                       rounds=3, iterations=1)


def test_full_lattice_forward_backward(benchmark, model, batch):
    benchmark.pedantic(full_step, args=(model, batch), setup=lambda: _clean(model, batch),
                       rounds=1, iterations=1)


def test_zipformer_s_encoder_forward_backward(benchmark, model, batch):
    benchmark.pedantic(encoder_step, args=(model, batch), setup=lambda: _clean(model, batch),
                       rounds=1, iterations=1)


def test_memory_and_speed_targets(model, batch):
    pruned_step(model, batch)  # warm-up (allocator, kernels)
    mem_pruned = peak_bytes(pruned_step, model, batch)
    mem_full = peak_bytes(full_step, model, batch)
    t_pruned = median_seconds(pruned_step, model, batch, rounds=3)
    t_encoder = median_seconds(encoder_step, model, batch, rounds=2)
    t_full = median_seconds(full_step, model, batch, rounds=1)
    where = torch.cuda.get_device_name() if DEVICE.type == "cuda" else f"cpu, {torch.get_num_threads()} threads"
    print(f"\npruned RNN-T benchmark on {where}: B={B} T={T} S={S} V={V} prune_range={PRUNE_RANGE}")
    print(f"  peak memory: pruned {mem_pruned / 2**20:.1f} MiB, full lattice {mem_full / 2**20:.1f} MiB, "
          f"ratio {mem_full / mem_pruned:.1f}x (target >= {MIN_MEMORY_RATIO:.0f}x)")
    print(f"  forward+backward: pruned {t_pruned * 1e3:.1f} ms, full lattice {t_full * 1e3:.1f} ms, "
          f"Zipformer-S encoder {t_encoder * 1e3:.1f} ms, pruned/encoder {t_pruned / t_encoder:.3f} (target < 1)")
    assert mem_full >= MIN_MEMORY_RATIO * mem_pruned
    assert t_pruned < t_encoder
