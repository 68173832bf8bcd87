"""One optimizer step on Zipformer-M's parameters: ScaledAdam vs torch.optim.Adam.

Targets (issue 3): ScaledAdam's step at most 2.5x Adam's on CPU, and its state
(bytes of the tensors in ``optimizer.state``) at most 5 % above Adam's.

    python3 -m pytest benchmarks/test_optimizer_step.py --benchmark-enable -s

Runs on one CPU thread (the model is the real ``zipformer-m`` with the
transducer heads, 65.5 M parameters in 743 tensors; gradients are random).
"""
from __future__ import annotations

import statistics
import time

import pytest
import torch

import variants
from variants.optim import build_optimizer, optimizer_state_bytes

ROUNDS = 5
MAX_TIME_RATIO = 2.5
MAX_MEMORY_RATIO = 1.05


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    m = variants.build_model("zipformer-m", objective="transducer")
    for p in m.parameters():
        p.grad = torch.randn_like(p) * 1e-3
    return m


def _adam(model: torch.nn.Module) -> torch.optim.Optimizer:
    return torch.optim.Adam(model.parameters(), lr=1e-4)     # torch's default implementation


def _scaled_adam(model: torch.nn.Module) -> torch.optim.Optimizer:
    return build_optimizer("scaled_adam", model, lr=1e-4)    # clipping on, as in training


@pytest.mark.benchmark(group="optimizer-step-zipformer-m")
@pytest.mark.parametrize("name", ["adam", "scaled_adam"])
def test_optimizer_step(benchmark, model, name):
    opt = (_adam if name == "adam" else _scaled_adam)(model)
    opt.step()                                                  # creates the state
    benchmark.extra_info["state_bytes"] = optimizer_state_bytes(opt)
    benchmark.extra_info["params"] = sum(p.numel() for p in model.parameters())
    benchmark.pedantic(opt.step, rounds=ROUNDS, iterations=1, warmup_rounds=1)


def test_scaled_adam_vs_adam_ratios(benchmark, model):
    """Interleaved medians, so both see the same machine load; prints both ratios.

    The benchmarked call is one Adam step followed by one ScaledAdam step.
    """
    adam, sa = _adam(model), _scaled_adam(model)
    adam.step()
    sa.step()
    times: dict[str, list[float]] = {"adam": [], "scaled_adam": []}

    def one_of_each() -> None:
        for name, opt in (("adam", adam), ("scaled_adam", sa)):
            t0 = time.perf_counter()
            opt.step()
            times[name].append(time.perf_counter() - t0)

    benchmark.pedantic(one_of_each, rounds=ROUNDS, iterations=1)
    t_adam, t_sa = statistics.median(times["adam"]), statistics.median(times["scaled_adam"])
    mem_adam, mem_sa = optimizer_state_bytes(adam), optimizer_state_bytes(sa)
    time_ratio, mem_ratio = t_sa / t_adam, mem_sa / mem_adam
    benchmark.extra_info.update(adam_step_s=t_adam, scaled_adam_step_s=t_sa, time_ratio=time_ratio,
                                adam_state_bytes=mem_adam, scaled_adam_state_bytes=mem_sa,
                                memory_ratio=mem_ratio, threads=torch.get_num_threads())
    print(f"\nZipformer-M optimizer step ({torch.get_num_threads()} thread): "
          f"Adam {t_adam * 1e3:.0f} ms, ScaledAdam {t_sa * 1e3:.0f} ms, time ratio {time_ratio:.2f} "
          f"(target <= {MAX_TIME_RATIO}); state Adam {mem_adam / 2**20:.2f} MiB, "
          f"ScaledAdam {mem_sa / 2**20:.2f} MiB, memory ratio {mem_ratio:.5f} "
          f"(target <= {MAX_MEMORY_RATIO})")
    assert mem_ratio <= MAX_MEMORY_RATIO
    assert time_ratio <= MAX_TIME_RATIO
