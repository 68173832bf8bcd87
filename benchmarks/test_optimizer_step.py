"""One optimizer step: ScaledAdam vs torch.optim.Adam on Zipformer-M, and ScaledAdam's
reference vs fused CPU step on the demo's Zipformer.

Targets: ScaledAdam's step at most 2.5x Adam's on CPU, and its state
(bytes of the tensors in ``optimizer.state``) at most 5 % above Adam's.
On the demo Zipformer (the ``zipformer`` row of experiments/default.yaml,
1.2 M parameters in ~200 tensors, real gradients of a demo-shaped batch, one
thread): the fused step against the reference step (``fast_paths.reference_paths()``),
timed alternately in one run; asserted: at most 0.5x (a regression guard; measured
0.38-0.42x); printed: the issue's goal of 3 ms, not met on the shared 2-core machine
this was written on (5-6 ms, reference 12-15 ms). And the same two inside training
(the step right after the backward pass, its data out of the caches: both slower;
at most 0.65x, measured 0.47-0.49x).

    python3 -m pytest benchmarks/test_optimizer_step.py --benchmark-enable -s

Runs on one CPU thread, and on the GPU too where there is one (the model is
the real ``zipformer-m`` with the transducer heads, 65.5 M parameters in 743
tensors; gradients are random). The targets are asserted for the CPU.
"""
from __future__ import annotations

import copy
import random
import statistics
import sys
import time
from pathlib import Path

import pytest
import torch

import variants
from variants import fast_paths
from variants.optim import build_optimizer, optimizer_state_bytes

ROUNDS = 5
MAX_TIME_RATIO = 2.5
MAX_MEMORY_RATIO = 1.05
DEMO_GOAL_STEP_S = 3e-3                  # issue 24's goal: printed, not asserted
DEMO_MAX_FUSED_OVER_REFERENCE = 0.5
DEMO_TRAINING_MAX_FUSED_OVER_REFERENCE = 0.65   # inside training (measured 0.47-0.49)
DEMO_ROUNDS = 30


DEVICES = [
    "cpu",
    pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU")),
]


@pytest.fixture(scope="module")
def cpu_model() -> torch.nn.Module:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    return variants.build_model("zipformer-m", objective="transducer")


@pytest.fixture(params=DEVICES)
def model(request, cpu_model) -> torch.nn.Module:
    m = cpu_model if request.param == "cpu" else copy.deepcopy(cpu_model).to(request.param)
    for p in m.parameters():
        p.grad = torch.randn_like(p) * 1e-3
    return m


def _timed_step(opt: torch.optim.Optimizer, device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    opt.step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - t0


def _adam(model: torch.nn.Module) -> torch.optim.Optimizer:
    return torch.optim.Adam(model.parameters(), lr=1e-4)     # torch's default implementation


def _scaled_adam(model: torch.nn.Module) -> torch.optim.Optimizer:
    return build_optimizer("scaled_adam", model, lr=1e-4)    # clipping on, as in training


@pytest.mark.benchmark(group="optimizer-step-zipformer-m")
@pytest.mark.parametrize("name", ["adam", "scaled_adam"])
def test_optimizer_step(benchmark, model, name):
    opt = (_adam if name == "adam" else _scaled_adam)(model)
    device = next(model.parameters()).device
    opt.step()                                                  # creates the state
    benchmark.extra_info["state_bytes"] = optimizer_state_bytes(opt)
    benchmark.extra_info["params"] = sum(p.numel() for p in model.parameters())
    benchmark.extra_info["device"] = str(device)
    benchmark.pedantic(_timed_step, args=(opt, device), rounds=ROUNDS, iterations=1,
                       warmup_rounds=1)


def test_scaled_adam_vs_adam_ratios(benchmark, model):
    """Interleaved medians, so both see the same machine load; prints both ratios.

    The benchmarked call is one Adam step followed by one ScaledAdam step.
    """
    adam, sa = _adam(model), _scaled_adam(model)
    device = next(model.parameters()).device
    adam.step()
    sa.step()
    times: dict[str, list[float]] = {"adam": [], "scaled_adam": []}

    def one_of_each() -> None:
        for name, opt in (("adam", adam), ("scaled_adam", sa)):
            times[name].append(_timed_step(opt, device))

    benchmark.pedantic(one_of_each, rounds=ROUNDS, iterations=1)
    t_adam, t_sa = statistics.median(times["adam"]), statistics.median(times["scaled_adam"])
    mem_adam, mem_sa = optimizer_state_bytes(adam), optimizer_state_bytes(sa)
    time_ratio, mem_ratio = t_sa / t_adam, mem_sa / mem_adam
    benchmark.extra_info.update(adam_step_s=t_adam, scaled_adam_step_s=t_sa, time_ratio=time_ratio,
                                adam_state_bytes=mem_adam, scaled_adam_state_bytes=mem_sa,
                                memory_ratio=mem_ratio, threads=torch.get_num_threads(),
                                device=str(device))
    where = (f"{torch.get_num_threads()} CPU thread" if device.type == "cpu"
             else torch.cuda.get_device_name(device))
    print(f"\nZipformer-M optimizer step ({where}): "
          f"Adam {t_adam * 1e3:.0f} ms, ScaledAdam {t_sa * 1e3:.0f} ms, time ratio {time_ratio:.2f} "
          f"(target <= {MAX_TIME_RATIO}); state Adam {mem_adam / 2**20:.2f} MiB, "
          f"ScaledAdam {mem_sa / 2**20:.2f} MiB, memory ratio {mem_ratio:.5f} "
          f"(target <= {MAX_MEMORY_RATIO})")
    assert mem_ratio <= MAX_MEMORY_RATIO
    if device.type == "cpu":
        assert time_ratio <= MAX_TIME_RATIO


@pytest.fixture(scope="module")
def demo_zipformer():
    """The demo's Zipformer row as the trainer builds it (model, ScaledAdam + Eden),
    after three real training steps (the optimizer state exists, clipping has norms),
    with the gradients of a fourth demo-shaped batch (~10 s of 1.3-2.7 s utterances)."""
    sys.path.insert(0, str(Path(__file__).parent))
    from demo_train_speed import Row, demo_batches, row_name
    from harness.grid.cells import load_cells

    torch.set_num_threads(1)
    _, cells = load_cells(str(Path(__file__).parents[1] / "experiments" / "default.yaml"))
    row = Row(next(c for c in cells if row_name(c) == "zipformer"), batch_count=300.0)
    batches = demo_batches(4, row.max_duration, seed=1)
    random.seed(0)
    torch.manual_seed(0)
    for i, batch in enumerate(batches[:3]):
        row.step(i, batch)
    feats, lens, tokens = batches[3]
    loss, _ = row.module(feats, lens, tokens, 303.0)
    loss.backward()
    return row


@pytest.mark.benchmark(group="optimizer-step-demo-zipformer")
def test_demo_zipformer_step_reference_vs_fused(benchmark, demo_zipformer):
    """The reference and the fused ScaledAdam step on the demo Zipformer, alternating
    (each from the same parameters, gradients and state), CPU time of one thread."""
    row = demo_zipformer
    opt = row.optimizer
    params = [p for g in opt.param_groups for p in g["params"]]
    start = ([p.detach().clone() for p in params],
             [None if p.grad is None else p.grad.clone() for p in params],
             copy.deepcopy(opt.state_dict()))
    times: dict[bool, list[float]] = {True: [], False: []}

    def one(reference: bool) -> float:
        with torch.no_grad():
            for p, v, g in zip(params, start[0], start[1]):
                p.copy_(v)
                if g is not None:
                    p.grad.copy_(g)
        opt.load_state_dict(copy.deepcopy(start[2]))
        with fast_paths.reference_paths(reference):
            opt.step()                   # the first step after loading builds the buckets
            for p, g in zip(params, start[1]):
                if g is not None:
                    p.grad.copy_(g)
            t0 = time.process_time()
            opt.step()
            return time.process_time() - t0

    def both() -> None:
        for reference in (True, False):
            times[reference].append(one(reference))

    benchmark.pedantic(both, rounds=DEMO_ROUNDS, iterations=1, warmup_rounds=1)
    t_ref, t_fused = statistics.median(times[True]), statistics.median(times[False])
    n_tensors = sum(1 for p in params if p.grad is not None)
    benchmark.extra_info.update(reference_step_s=t_ref, fused_step_s=t_fused,
                                fused_over_reference=t_fused / t_ref, tensors=n_tensors,
                                params=sum(p.numel() for p in params), rounds=len(times[True]))
    print(f"\nDemo Zipformer ScaledAdam step ({n_tensors} tensors, "
          f"{sum(p.numel() for p in params) / 1e6:.2f} M parameters, 1 CPU thread, median of "
          f"{len(times[True])}): reference {t_ref * 1e3:.2f} ms, fused {t_fused * 1e3:.2f} ms, "
          f"ratio {t_fused / t_ref:.2f} (target <= {DEMO_MAX_FUSED_OVER_REFERENCE}); goal "
          f"<= {DEMO_GOAL_STEP_S * 1e3:.0f} ms {'met' if t_fused <= DEMO_GOAL_STEP_S else 'not met'}")
    if benchmark.enabled:                # timed runs only (not the one-round smoke run)
        assert t_fused / t_ref <= DEMO_MAX_FUSED_OVER_REFERENCE


@pytest.mark.benchmark(group="optimizer-step-demo-zipformer")
def test_demo_zipformer_step_inside_training(benchmark, demo_zipformer):
    """The optimizer step as training sees it (right after the backward pass, its data
    out of the caches): the demo row trains on demo-shaped batches, two steps on each
    path in turn, and only ``optimizer.step()`` is timed (CPU time, one thread)."""
    sys.path.insert(0, str(Path(__file__).parent))
    from demo_train_speed import demo_batches

    row = copy.deepcopy(demo_zipformer)
    opt = row.optimizer
    opt.zero_grad(set_to_none=True)
    batches = demo_batches(8, row.max_duration, seed=2)
    step, times = opt.step, {True: [], False: []}
    path = {"reference": True}

    def timed_step(*args, **kwargs):
        with fast_paths.reference_paths(path["reference"]):
            t0 = time.process_time()
            out = step(*args, **kwargs)
            times[path["reference"]].append(time.process_time() - t0)
        return out

    opt.step = timed_step
    state = {"i": 0}

    def two_steps_each() -> None:
        for reference in (True, False):
            path["reference"] = reference
            for _ in range(2):
                row.step(10 + state["i"], batches[state["i"] % len(batches)])
                state["i"] += 1

    try:
        benchmark.pedantic(two_steps_each, rounds=6, iterations=1, warmup_rounds=1)
    finally:
        del opt.step
    # the warm-up round's steps are left out (the smoke run, benchmarks disabled, has none)
    kept = {k: v[2:] if len(v) > 2 else v for k, v in times.items()}
    t_ref, t_fused = statistics.median(kept[True]), statistics.median(kept[False])
    benchmark.extra_info.update(reference_step_s=t_ref, fused_step_s=t_fused,
                                fused_over_reference=t_fused / t_ref,
                                steps_each=len(kept[True]))
    print(f"\nDemo Zipformer ScaledAdam step inside training (1 CPU thread, median of "
          f"{len(kept[True])} steps each): reference {t_ref * 1e3:.2f} ms, fused "
          f"{t_fused * 1e3:.2f} ms, ratio {t_fused / t_ref:.2f} "
          f"(target <= {DEMO_TRAINING_MAX_FUSED_OVER_REFERENCE})")
    if benchmark.enabled:
        assert t_fused / t_ref <= DEMO_TRAINING_MAX_FUSED_OVER_REFERENCE
