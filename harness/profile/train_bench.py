"""Training step time and peak memory (forward + backward + optimizer step).

The training-side counterpart of :mod:`.bench`: one variant, a batch of
``batch`` utterances of ``duration_s`` seconds (random fbank, random
transcripts at ``tokens_per_s``), the variant's own objective and optimizer
(ScaledAdam for Zipformer), training schedules past warm-up (``batch_count``).
Each measurement runs in a fresh process (:func:`.bench.run_isolated` with
``kind="train"``):

- time: ``warmup`` untimed steps, then ``steps`` timed ones (CUDA synchronised);
- GPU memory: ``torch.cuda.max_memory_allocated`` over warm-up and timed steps,
  reset after the model and input are on the GPU: activations, gradients and
  optimizer state on top of the weights and input;
- CPU memory: peak RSS over the steps minus RSS after building the model and
  input (as in :mod:`.bench`);
- saved MB: bytes the first step's forward saved for backward
  (:func:`.saved_bytes.count_saved_bytes`, parameters excluded);
- live peak MB: the peak of live tensor bytes over the first step's forward
  + backward (:class:`.live_bytes.LiveBytes`; weights and input excluded,
  gradients included): the device-free proxy of peak training memory.

Phases: the median share of a step in ``forward`` (Conv-Embed + encoder),
``loss`` (heads and losses), ``backward`` and ``optimizer`` (step and
zero_grad); each boundary synchronises on CUDA.

``compile``: the encoder through ``torch.compile`` as ``train.compile`` does
(:mod:`harness.train.compile`); ``compile_s`` is the first warm-up step's time
less the median step (what compiling cost); ``graphs`` the number of graphs it
made (one per compiled layer and shape class; steps do not add to it, see
harness/train/compile.py).

``precision`` "bf16" runs the forward under ``torch.autocast`` in bfloat16 on
the measuring device (on CPU with CPU autocast's own policy).
"""
from __future__ import annotations

import contextlib
import random
import statistics
import time
from dataclasses import dataclass, field
from typing import Any, Mapping

from .measure import FEATURE_RATE_HZ, PRECISIONS, PeakMemory, check_args, device_name, quartiles

OBJECTIVES = ("transducer", "ctc", "attention")
PHASES = ("forward", "loss", "backward", "optimizer")


@dataclass(frozen=True)
class TrainBenchResult:
    variant: str
    device: str
    device_type: str
    threads: int
    precision: str
    objective: str
    batch: int
    duration_s: float
    steps: int
    warmup: int
    median_s: float
    p25_s: float
    p75_s: float
    peak_mem_mb: float
    saved_mb: float
    mem_method: str
    live_peak_mb: float = 0.0
    times_s: list[float] = field(default_factory=list)
    compiled: bool = False
    steps_per_s: float = 0.0
    #: median share of the step per phase (forward, loss, backward, optimizer)
    phases: dict[str, float] = field(default_factory=dict)
    compile_s: float | None = None
    #: compiled: the graphs torch.compile made (Dynamo's count after the last step; steps
    #: that compiled again would add to it)
    graphs: int | None = None


def check_train_args(precision: str, objective: str, tokens_per_s: float) -> None:
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; allowed: {', '.join(PRECISIONS)}")
    if objective not in OBJECTIVES:
        raise ValueError(f"unknown objective {objective!r}; allowed: {', '.join(OBJECTIVES)}")
    if tokens_per_s <= 0:
        raise ValueError(f"tokens per second must be > 0, got {tokens_per_s}")


def measure_train(variant: str, batch: int, duration_s: float, steps: int, warmup: int,
                  device: str = "cpu", threads: int = 1, precision: str = "float32",
                  objective: str = "transducer", tokens_per_s: float = 4.0,
                  batch_count: float = 30000.0,
                  overrides: Mapping[str, Any] | None = None,
                  compile: bool = False) -> TrainBenchResult:
    """Time training steps of ``variant`` in this process (use ``run_isolated(kind="train")``)."""
    import torch

    from harness.losses import compute_loss
    from variants import build_model

    from .live_bytes import LiveBytes
    from .saved_bytes import count_saved_bytes
    from variants.optim import build_optimizer

    check_args(batch, duration_s, steps, warmup, device, threads)
    check_train_args(precision, objective, tokens_per_s)
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda asked for, but torch sees no CUDA device")
    torch.set_num_threads(threads)
    if device == "cpu":   # as the trainer does
        from harness.train.allocator import keep_freed_memory
        keep_freed_memory()
    torch.manual_seed(0)
    random.seed(0)
    model = build_model(variant, objective=objective, **dict(overrides or {})).to(device).train()
    model.set_batch_count(batch_count)
    if compile:
        from harness.train.compile import compile_encoder
        compile_encoder(model)
    optimizer = build_optimizer(model.spec.optimizer, model)
    frames = int(round(duration_s * FEATURE_RATE_HZ))
    feats = torch.randn(batch, frames, model.spec.encoder.num_features, device=device)
    feat_lens = torch.full((batch,), frames, dtype=torch.int64, device=device)
    n_tok = max(1, int(duration_s * tokens_per_s))
    g = torch.Generator().manual_seed(0)
    vocab = model.spec.heads.vocab_size
    tokens = [torch.randint(3, vocab, (n_tok,), generator=g).tolist() for _ in range(batch)]
    bf16 = precision == "bf16"

    def sync() -> None:
        if device == "cuda":
            torch.cuda.synchronize()

    saved_bytes = [0]
    live = LiveBytes()
    phase = {"forward": 0.0}
    forward_encoder = model.forward_encoder

    def timed_forward_encoder(*args, **kwargs):
        sync()
        t = time.perf_counter()
        out = forward_encoder(*args, **kwargs)
        sync()
        phase["forward"] += time.perf_counter() - t
        return out

    model.forward_encoder = timed_forward_encoder

    def step(i: int, count_saved: bool = False) -> dict[str, float]:
        phase["forward"] = 0.0
        t0 = time.perf_counter()
        with contextlib.ExitStack() as stack:
            if count_saved:
                stack.enter_context(live)
            with torch.autocast(device, dtype=torch.bfloat16, enabled=bf16):
                if count_saved:
                    (loss, _), saved = count_saved_bytes(
                        lambda: compute_loss(model, feats, feat_lens, tokens, batch_count=batch_count + i),
                        exclude=model.parameters())
                    saved_bytes[0] = sum(s.nbytes for s in saved)
                else:
                    loss, _ = compute_loss(model, feats, feat_lens, tokens, batch_count=batch_count + i)
            sync()
            t1 = time.perf_counter()
            # gradients of the previous step freed before this backward (the live peak counts
            # this step's gradients, as a training loop that zeroes after its step has them)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            sync()
            t2 = time.perf_counter()
        optimizer.step()
        sync()
        t3 = time.perf_counter()
        return {"forward": phase["forward"], "loss": t1 - t0 - phase["forward"],
                "backward": t2 - t1, "optimizer": t3 - t2}

    memory = PeakMemory(device)
    memory.start()
    times, shares, first = [], [], None
    for i in range(warmup + steps):
        sync()
        t0 = time.perf_counter()
        parts = step(i, count_saved=(i == 0))
        sync()
        elapsed = time.perf_counter() - t0
        first = elapsed if first is None else first
        if i >= warmup:
            times.append(elapsed)
            shares.append({k: v / elapsed for k, v in parts.items()})
    peak_mb, method = memory.read(
        "weights, input, activations, gradients, optimizer state over the steps", "the steps")
    p25, med, p75 = quartiles(times)
    return TrainBenchResult(variant=variant, device=device_name(device), device_type=device,
                            threads=threads, precision=precision, objective=objective, batch=batch,
                            duration_s=float(duration_s), steps=steps, warmup=warmup, median_s=med,
                            p25_s=p25, p75_s=p75, peak_mem_mb=max(peak_mb, 0.0),
                            saved_mb=saved_bytes[0] / 2**20, mem_method=method, times_s=times,
                            live_peak_mb=live.peak / 2**20,
                            compiled=compile, steps_per_s=1.0 / med if med > 0 else 0.0,
                            phases={k: statistics.median(s[k] for s in shares) for k in PHASES},
                            compile_s=(max(first - med, 0.0) if compile and warmup else None),
                            graphs=_graph_count() if compile else None)


def _graph_count() -> int:
    from harness.train.compile import dynamo_counts
    return dynamo_counts()["graphs"]

