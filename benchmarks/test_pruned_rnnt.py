"""Pruned RNN-T loss (per backend) vs the full lattice vs the Zipformer-S encoder.

At B=8, T=500 encoder frames, S=100 tokens, vocabulary 500, with the real
Zipformer-S transducer heads (joiner 512, decoder 512), forward and backward:

- the pruned path (simple loss, prune ranges, pruned joiner, pruned loss) for
  every RNN-T backend that runs here: "torch" always, "triton" on a GPU;
- the full lattice: torchaudio's fused ``rnnt_loss`` when torchaudio imports,
  else the harness's own full loss (``rnnt_steps.FULL_LOSS`` says which);
- the Zipformer-S encoder (8 x 2005 fbank frames -> 500 encoder frames).

Targets: peak memory of every pruned path at least 10x below the full
lattice's; the torch pruned path faster than the encoder; on a GPU the Triton
pruned path no slower than the full fused loss and at most 0.1x the encoder.

    python3 -m pytest benchmarks/test_pruned_rnnt.py --benchmark-enable -s

Runs on the GPU when there is one (``HARNESS_BENCH_DEVICE=cpu`` forces the CPU);
peak memory from the CUDA allocator, on a CPU from the profiler's allocation
events. ``benchmarks/gpu_rnnt_check.py`` prints the same numbers as JSON plus a
Zipformer-M training-step profile.
"""
from __future__ import annotations

import os

import pytest
import torch

import variants
from harness.losses.rnnt_backend import TORCH_BACKEND
from rnnt_steps import (FULL_LOSS, available_backends, clean, encoder_step, full_step, make_batch, measure,
                        pruned_step)

B, T, S, V = 8, 500, 100, 500
FEATS_T = 2005  # ((2005 - 7) // 2 + 1) // 2 = 500 encoder frames
PRUNE_RANGE = 5
MIN_MEMORY_RATIO = 10.0
MAX_TRITON_ENCODER_RATIO = 0.1
#: HARNESS_BENCH_DEVICE=cpu forces the CPU on a machine with a GPU
DEVICE = torch.device(os.environ.get("HARNESS_BENCH_DEVICE") or ("cuda" if torch.cuda.is_available() else "cpu"))


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    torch.manual_seed(0)
    return variants.build_model("zipformer-s", objective="transducer").to(DEVICE).train()


@pytest.fixture(scope="module")
def batch(model):
    assert model.vocab_size == V
    return make_batch(model, B, T, S, FEATS_T, DEVICE)


def test_pruned_loss_forward_backward(benchmark, model, batch):
    step = pruned_step(TORCH_BACKEND, PRUNE_RANGE)
    step(model, batch)  # warm-up
    benchmark.pedantic(step, args=(model, batch), setup=lambda: clean(model, batch), rounds=3, iterations=1)


def test_full_lattice_forward_backward(benchmark, model, batch):
    benchmark.pedantic(full_step, args=(model, batch), setup=lambda: clean(model, batch),
                       rounds=1, iterations=1)


def test_zipformer_s_encoder_forward_backward(benchmark, model, batch):
    benchmark.pedantic(encoder_step, args=(model, batch), setup=lambda: clean(model, batch),
                       rounds=1, iterations=1)


def test_memory_and_speed_targets(model, batch):
    backends = available_backends(DEVICE) if DEVICE.type == "cuda" else [TORCH_BACKEND]
    pruned = {b.name: measure(pruned_step(b, PRUNE_RANGE), model, batch, rounds=3) for b in backends}
    full = measure(full_step, model, batch, rounds=1)
    encoder = measure(encoder_step, model, batch, rounds=2)
    where = torch.cuda.get_device_name() if DEVICE.type == "cuda" else f"cpu, {torch.get_num_threads()} threads"
    print(f"\npruned RNN-T benchmark on {where}: B={B} T={T} S={S} V={V} prune_range={PRUNE_RANGE}")
    print(f"  full: {FULL_LOSS} {full['ms']:.1f} ms, peak {full['peak_mib']:.1f} MiB; "
          f"Zipformer-S encoder {encoder['ms']:.1f} ms, peak {encoder['peak_mib']:.1f} MiB")
    for name, r in pruned.items():
        print(f"  pruned path, backend {name}: {r['ms']:.1f} ms (/full {r['ms'] / full['ms']:.2f}, "
              f"/encoder {r['ms'] / encoder['ms']:.3f}), peak {r['peak_mib']:.1f} MiB "
              f"(full/pruned {full['peak_mib'] / r['peak_mib']:.1f}x, target >= {MIN_MEMORY_RATIO:.0f}x)")
    for r in pruned.values():
        assert full["peak_mib"] >= MIN_MEMORY_RATIO * r["peak_mib"]
    assert pruned["torch"]["ms"] < encoder["ms"]
    if "triton" in pruned:
        assert pruned["triton"]["ms"] <= full["ms"]
        assert pruned["triton"]["ms"] <= MAX_TRITON_ENCODER_RATIO * encoder["ms"]
