"""One optimizer step on Zipformer-M's parameters: ScaledAdam vs torch.optim.Adam.

Targets: ScaledAdam's step at most 2.5x Adam's on CPU, and its state
(bytes of the tensors in ``optimizer.state``) at most 5 % above Adam's.

    python3 -m pytest benchmarks/test_optimizer_step.py --benchmark-enable -s

Runs on one CPU thread, and on the GPU too where there is one (the model is
the real ``zipformer-m`` with the transducer heads, 65.5 M parameters in 743
tensors; gradients are random). The targets are asserted for the CPU.
"""
from __future__ import annotations

import copy
import statistics
import time

import pytest
import torch

import variants
from variants.optim import build_optimizer, optimizer_state_bytes

ROUNDS = 5
MAX_TIME_RATIO = 2.5
MAX_MEMORY_RATIO = 1.05


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
