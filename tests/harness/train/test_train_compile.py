"""train.compile: a compiled training step (inductor's CPU backend) against eager, and compiled
steps whose per-step decisions change without compiling again."""
from __future__ import annotations

import contextlib
import random

import pytest
import torch

from harness.losses import compute_loss
from harness.train.compile import COMPILE_OPTIONS, compile_encoder, dynamo_counts, install_decisions
from variants import build_model, fast_paths
from variants.components.balancer import Balancer
from variants.components.convolution_module import ConvolutionModule
from variants.components.downsample import Downsample
from variants.optim import build_optimizer


SMALL = {"downsampling_factor": [1], "num_encoder_layers": [1], "encoder_dim": [32],
         "feedforward_dim": [32], "encoder_unmasked_dim": [16], "num_heads": [2],
         "cnn_module_kernel": [7]}


def _batches(lengths):
    g = torch.Generator().manual_seed(0)
    return [(torch.randn(2, n, 80, generator=g), torch.tensor([n, n - 9]), [[5, 6, 7], [8, 9]])
            for n in lengths]


def _steps(backend: str | None, batches, batch_counts, after_step=None, models=None) -> list[float]:
    """``backend``: torch.compile's; None: eager, decisions drawn before the encoder as compiled."""
    torch.manual_seed(0)
    random.seed(0)
    # one stack of zipformer-tiny (every module of a block; compiling all six takes minutes)
    model = build_model("zipformer-tiny", objective="ctc", **SMALL).train()
    if backend is None:
        install_decisions(model.encoder)
    else:
        compile_encoder(model, backend=backend)
    opt = build_optimizer("scaled_adam", model, lr=0.05)
    losses = []
    for i, ((x, lens, tokens), n) in enumerate(zip(batches, batch_counts)):
        random.seed(i)
        torch.manual_seed(i)
        model.set_batch_count(n)
        loss, _ = compute_loss(model, x, lens, tokens, batch_count=n)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(float(loss))
        if after_step is not None:
            after_step(model)
    assert type(model.encoder).__name__ != "OptimizedModule"   # compiled in place
    assert "_orig_mod" not in "".join(model.state_dict())
    if models is not None:
        models.append(model)
    return losses


@pytest.mark.timeout(900)
def test_compiled_steps_match_eager(one_thread, monkeypatch):
    """A minute or so of CPU time, nearly all of it inductor compiling the block."""
    # the compiled graphs draw dropout masks from torch's generator, as eager does
    import torch._inductor.config as inductor_config
    monkeypatch.setattr(inductor_config, "fallback_random", True)
    torch._dynamo.reset()
    # two batches and two schedule points (new draws and schedule values): the second step
    # reuses the first's graphs. Same length: with inductor, AOT autograd gives the backward
    # the first batch's concrete strides, so a new length compiles again (harness/train/compile.py)
    batches, counts = _batches((90, 90)), (100.0, 3000.0)
    eager = _steps(None, batches, counts)
    graphs: list[int] = []
    compiled = _steps("inductor", batches, counts, lambda m: graphs.append(dynamo_counts()["graphs"]))
    for a, b in zip(compiled, eager):
        assert abs(a - b) <= 1e-4 * abs(b), (compiled, eager)
    assert graphs[0] >= 1 and graphs[1] == graphs[0], graphs
    assert dynamo_counts()["graph_breaks"] == 0


@pytest.mark.parametrize("gpu_arithmetic", [False, True], ids=["cpu-paths", "gpu-paths"])
def test_changing_decisions_do_not_recompile(one_thread, gpu_arithmetic):
    """Six steps (Dynamo only: the eager backend) across the schedules' range, different
    lengths and random draws: the graphs of the first step serve all of them. gpu-paths:
    the arithmetic a GPU takes (``fast_paths.device_independent()``: no CPU layout paths,
    the feed-forward and convolution modules' recomputation where not compiled)."""
    with fast_paths.device_independent() if gpu_arithmetic else contextlib.nullcontext():
        _changing_decisions_do_not_recompile()


def _changing_decisions_do_not_recompile() -> None:
    torch._dynamo.reset()
    counts: list[dict[str, int]] = []
    acts: set[tuple[float, ...]] = set()

    def record(model):
        counts.append(dynamo_counts())
        acts.add(tuple(float(m._decision[0]) for m in model.encoder.modules()
                      if isinstance(m, Balancer)))

    lengths = (90, 110, 70, 130, 90, 100)
    batch_counts = (0.0, 500.0, 2000.0, 4000.0, 12000.0, 30000.0)
    eager = _steps(None, _batches(lengths), batch_counts)
    torch._dynamo.reset()
    models: list = []
    compiled = _steps("eager", _batches(lengths), batch_counts, record, models)  # Dynamo, run eagerly
    with torch.no_grad():                                     # validation: eager, no new graph
        x, lens, _ = _batches((80,))[0]
        models[0].eval()(x, lens)
    record(models[0])
    assert len(acts) > 1, "the Balancers' draws did not change between steps"
    assert all(c == counts[0] for c in counts), counts
    assert counts[0]["graphs"] >= 1 and counts[0]["graph_breaks"] == 0, counts[0]
    for a, b in zip(compiled, eager):
        assert abs(a - b) <= 1e-5 * abs(b), (compiled, eager)


@pytest.mark.timeout(300)
def test_downsampled_convolution_compiles(one_thread):
    """A downsampled stack's convolution module compiled as train.compile compiles (inductor,
    dynamic shapes) at an odd length, forward and backward equal to eager. The CPU-only
    layout paths are off inside compiled regions (``fast_paths.cpu_layout``): the depth-wise
    convolution's channels-last 2-d view had a stride in ceil(T / 2) that inductor could not
    order against the channel count, and the demo Zipformer's first compiled step crashed
    (``cannot determine truth value of Relational``). ~20 s of CPU, most of it inductor."""
    torch._dynamo.reset()
    torch.manual_seed(0)
    down = Downsample(2)
    conv = ConvolutionModule(16, 7, balancer=False, whitener=False).train()
    assert fast_paths.cpu_layout(torch.zeros(1))             # eager takes the CPU layout paths

    def stack(x, lens):
        y, y_lens = down(x, lens)
        return conv(y, torch.arange(y.shape[1]) >= y_lens.unsqueeze(1))

    x, lens = torch.randn(2, 33, 16), torch.tensor([33, 24])
    params = [*down.parameters(), *conv.parameters()]

    def run(fn):
        xg = x.clone().requires_grad_(True)
        out = fn(xg, lens)
        grads = torch.autograd.grad(out.square().sum(), [xg, *params])
        return [out.detach(), *grads]

    eager = run(stack)
    compiled = run(torch.compile(stack, backend="inductor", **COMPILE_OPTIONS))
    for a, b in zip(compiled, eager):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert dynamo_counts()["graph_breaks"] == 0
