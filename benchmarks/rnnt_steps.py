"""Steps and measurements shared by benchmarks/test_pruned_rnnt.py and
benchmarks/gpu_rnnt_check.py: the pruned transducer path per RNN-T backend,
the full lattice (torchaudio's fused ``rnnt_loss`` when it imports, else the
harness's own full loss), the encoder's forward+backward, each timed and with
its peak memory (CUDA allocator on a GPU, the profiler's allocation events on
a CPU)."""
from __future__ import annotations

import gc
import importlib
import statistics
import time
from typing import Callable

import torch

from harness.losses import make_boundary, rnnt_loss
from harness.losses.rnnt_backend import RnntBackend, resolve_rnnt_backend
from harness.losses.transducer_loss import transducer_losses

Batch = tuple[torch.Tensor, ...]


def make_batch(model: torch.nn.Module, B: int, T: int, S: int, feats_T: int, device: torch.device) -> Batch:
    """(enc, enc_lens, y, y_lens, feats, feat_lens): random encoder output and fbank, full lengths."""
    g = torch.Generator().manual_seed(1)
    enc = torch.randn(B, T, model.encoder_dim, generator=g).to(device).requires_grad_(True)
    y = torch.randint(1, model.vocab_size, (B, S), generator=g).to(device)
    feats = torch.randn(B, feats_T, 80, generator=g).to(device)
    full = lambda n: torch.full((B,), n, dtype=torch.int64, device=device)  # noqa: E731
    return enc, full(T), y, full(S), feats, full(feats_T)


def available_backends(device: torch.device) -> list[RnntBackend]:
    """torch always; triton where it can run on ``device`` (CUDA, or the CPU interpreter)."""
    backends = [resolve_rnnt_backend("torch")]
    try:
        backends.append(resolve_rnnt_backend("triton", device))
    except RuntimeError:
        pass
    return backends


def pruned_step(backend: RnntBackend, prune_range: int = 5) -> Callable:
    def step(model, batch) -> None:
        """Simple + pruned loss (decoder and joiner included), forward and backward."""
        enc, enc_lens, y, y_lens = batch[:4]
        simple, pruned = transducer_losses(model, enc, enc_lens, y, y_lens, prune_range, 0.25, 0.0, backend)
        (0.5 * simple + pruned).backward()
    return step


def _torchaudio_rnnt_loss() -> Callable | None:
    try:
        return importlib.import_module("torchaudio.functional").rnnt_loss
    except Exception:  # not installed, built for another torch, or rnnt_loss removed
        return None


FULL_LOSS = "torchaudio rnnt_loss (fused)" if _torchaudio_rnnt_loss() else "harness rnnt_loss (full lattice)"


def full_step(model, batch) -> None:
    """Full joiner on every (frame, token) pair + full RNN-T loss (``FULL_LOSS``), forward and backward."""
    enc, enc_lens, y, y_lens = batch[:4]
    decoder_out = model.decoder(torch.nn.functional.pad(y, (1, 0), value=model.blank_id))
    logits = model.joiner(enc.unsqueeze(2), decoder_out.unsqueeze(1)).float()  # (B, T, S+1, V)
    fused = _torchaudio_rnnt_loss()
    if fused is not None:
        loss = fused(logits, y.int(), enc_lens.int(), y_lens.int(), blank=model.blank_id, reduction="sum")
    else:
        loss = rnnt_loss(logits, y, model.blank_id, make_boundary(y_lens, enc_lens))
    loss.backward()


def encoder_step(model, batch) -> None:
    """Conv-Embed + encoder, forward and backward."""
    feats, feat_lens = batch[4:]
    out, _ = model.forward_encoder(feats, feat_lens)
    out.square().mean().backward()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def clean(model, batch) -> None:
    model.zero_grad(set_to_none=True)
    batch[0].grad = None
    gc.collect()
    if batch[0].is_cuda:
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
    device = batch[0].device
    clean(model, batch)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        step(model, batch)
        sync(device)
        peak = torch.cuda.max_memory_allocated(device) - base
    else:
        peak = _profiled_peak(step, model, batch)
    clean(model, batch)
    return peak


def median_seconds(step: Callable, model, batch, rounds: int) -> float:
    device = batch[0].device
    times = []
    for _ in range(rounds):
        clean(model, batch)
        sync(device)
        t0 = time.perf_counter()
        step(model, batch)
        sync(device)
        times.append(time.perf_counter() - t0)
    clean(model, batch)
    return statistics.median(times)


def measure(step: Callable, model, batch, rounds: int) -> dict[str, float]:
    """{"ms": median forward+backward time, "peak_mib": peak memory}, after one warm-up call."""
    step(model, batch)
    clean(model, batch)
    return {"ms": round(median_seconds(step, model, batch, rounds) * 1e3, 2),
            "peak_mib": round(peak_bytes(step, model, batch) / 2**20, 1)}
