"""Encoder inference time and peak memory (the paper's Figure 3 protocol).

Figure 3: a batch of 30 utterances of 30 s, inference mode, one GPU. Each
measurement runs in a fresh Python process (:func:`run_isolated`) so that
nothing another model allocated earlier inflates its peak memory:

- arithmetic: float32 (TF32 off on CUDA: the paper's V100 has none);
- time: ``warmup`` untimed forward passes, then ``runs`` timed ones (CUDA
  synchronised before and after each); the median and quartiles are reported;
- GPU memory: ``torch.cuda.max_memory_allocated`` over the timed runs, peak
  statistics reset after the model and input are on the GPU, so it holds
  weights + input + activations, as the paper's curves do;
- CPU memory: the process's peak resident size over the runs (``VmHWM`` after
  resetting it through ``/proc/self/clear_refs``; ``ru_maxrss`` where that is not
  possible) minus the resident size after building the model and input, i.e.
  the memory inference itself needs.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping

from .measure import FEATURE_RATE_HZ, PeakMemory, check_args, device_name, quartiles

@dataclass(frozen=True)
class BenchResult:
    variant: str
    device: str          # CPU model string or GPU name
    device_type: str     # "cpu" or "cuda"
    threads: int
    batch: int
    duration_s: float
    runs: int
    warmup: int
    median_s: float
    p25_s: float
    p75_s: float
    peak_mem_mb: float
    mem_method: str
    times_s: list[float] = field(default_factory=list)


def measure(variant: str, batch: int, duration_s: float, runs: int, warmup: int,
            device: str = "cpu", threads: int = 1,
            overrides: Mapping[str, Any] | None = None) -> BenchResult:
    """Time the encoder of ``variant`` in this process (use :func:`run_isolated`)."""
    import torch

    from variants import build_model

    check_args(batch, duration_s, runs, warmup, device, threads)
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda asked for, but torch sees no CUDA device")
    torch.set_num_threads(threads)
    if device == "cuda":
        # the paper's V100 has no TF32: measure true float32 arithmetic
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    torch.manual_seed(0)
    model = build_model(variant, objective="ctc", **dict(overrides or {})).to(device).eval()
    frames = int(round(duration_s * FEATURE_RATE_HZ))
    x = torch.randn(batch, frames, model.spec.encoder.num_features, device=device)
    x_lens = torch.full((batch,), frames, dtype=torch.int64, device=device)

    def sync() -> None:
        if device == "cuda":
            torch.cuda.synchronize()

    memory = PeakMemory(device)
    with torch.inference_mode():
        if device != "cuda":
            # CPU baseline before the first forward: the allocator keeps what a forward
            # freed, so a baseline taken after warm-up would hide the activations' peak
            memory.start()
        for _ in range(warmup):
            model(x, x_lens)
        sync()
        if device == "cuda":
            memory.start()
        times = []
        for _ in range(runs):
            sync()
            t0 = time.perf_counter()
            model(x, x_lens)
            sync()
            times.append(time.perf_counter() - t0)
    peak_mb, method = memory.read("weights + input + activations", "warm-up and runs")
    p25, med, p75 = quartiles(times)
    return BenchResult(variant=variant, device=device_name(device), device_type=device,
                       threads=threads, batch=batch, duration_s=float(duration_s), runs=runs,
                       warmup=warmup, median_s=med, p25_s=p25, p75_s=p75,
                       peak_mem_mb=max(peak_mb, 0.0), mem_method=method, times_s=times)


def run_isolated(variant: str, batch: int, duration_s: float, runs: int, warmup: int,
                 device: str = "cpu", threads: int = 1,
                 overrides: Mapping[str, Any] | None = None, timeout_s: float | None = None,
                 kind: str = "inference", **train_options: Any):
    """:func:`measure` (``kind="inference"``) or :func:`.train_bench.measure_train`
    (``kind="train"``, ``runs`` timed steps, ``train_options`` passed on) in a
    fresh Python process; its result comes back as JSON."""
    check_args(batch, duration_s, runs, warmup, device, threads)
    if kind not in KINDS:
        raise ValueError(f"unknown benchmark kind {kind!r}; allowed: {', '.join(KINDS)}")
    if kind == "inference" and train_options:
        raise ValueError(f"inference benchmarks take no {', '.join(sorted(train_options))}")
    request = dict(variant=variant, batch=batch, duration_s=duration_s, warmup=warmup,
                   device=device, threads=threads, overrides=dict(overrides or {}),
                   **{"runs" if kind == "inference" else "steps": runs}, **train_options)
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    proc = subprocess.run([sys.executable, "-m", "harness.profile.bench", json.dumps(request), kind],
                          capture_output=True, text=True, env=env, timeout=timeout_s)
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark of {variant} failed (exit {proc.returncode}):\n"
                           f"{proc.stderr.strip()[-2000:]}")
    last = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")][-1]
    return _result_type(kind)(**json.loads(last))


KINDS = ("inference", "train")


def _result_type(kind: str):
    if kind == "train":
        from .train_bench import TrainBenchResult
        return TrainBenchResult
    return BenchResult


def _main(argv: list[str]) -> int:
    if len(argv) not in (1, 2) or (len(argv) == 2 and argv[1] not in KINDS):
        print("usage: python -m harness.profile.bench '<json request>' [inference|train]", file=sys.stderr)
        return 2
    request = json.loads(argv[0])
    if len(argv) == 2 and argv[1] == "train":
        from .train_bench import measure_train
        print(json.dumps(asdict(measure_train(**request))))
    else:
        print(json.dumps(asdict(measure(**request))))
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
