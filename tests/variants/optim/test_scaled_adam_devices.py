"""ScaledAdam on other dtypes and on every device (``device`` fixture: "cpu"
always, "cuda" where a GPU is present)."""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from variants.optim import ScaledAdam, build_optimizer

torch.set_num_threads(1)


def _model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    m = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 4))
    m.register_parameter("gain", nn.Parameter(torch.tensor(1.0)))
    return m


def _train(model: nn.Module, opt: torch.optim.Optimizer, steps: int, device: str,
           scaler: torch.amp.GradScaler | None = None, dtype: torch.dtype | None = None) -> None:
    gen = torch.Generator().manual_seed(1)
    for _ in range(steps):
        x = torch.randn(16, 6, generator=gen).to(device, model[0].weight.dtype)
        with torch.autocast(device, dtype=dtype or torch.float32, enabled=dtype is not None):
            loss = (model(x).float() ** 2).mean() * model.gain
        if scaler is None:
            loss.backward()
            opt.step()
        else:
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
        opt.zero_grad()


def test_bfloat16_parameters_keep_float32_scale_moments():
    model = _model().to(torch.bfloat16)
    opt = build_optimizer("scaled_adam", model)
    _train(model, opt, 3, "cpu", dtype=None)
    w = model[0].weight
    assert opt.state[w]["exp_avg"].dtype == torch.bfloat16
    assert opt.state[w]["scale_exp_avg_sq"].dtype == torch.float32
    assert all(torch.isfinite(p.float()).all() for p in model.parameters())
    opt2 = build_optimizer("scaled_adam", model)
    opt2.load_state_dict(opt.state_dict())          # torch casts state to the param dtype ...
    assert opt2.state[w]["scale_exp_avg_sq"].dtype == torch.float32      # ... except these
    assert torch.equal(opt2.state[w]["scale_exp_avg_sq"], opt.state[w]["scale_exp_avg_sq"])


def test_device_matches_cpu(device):
    cpu = _model()
    dev = copy.deepcopy(cpu).to(device)
    opt_c, opt_d = ScaledAdam(cpu.parameters()), ScaledAdam(dev.parameters())
    _train(cpu, opt_c, 30, "cpu")             # past step 10 and 20: clipping thresholds set
    _train(dev, opt_d, 30, device)
    assert opt_d.clipping.threshold == pytest.approx(opt_c.clipping.threshold, rel=1e-4)
    for a, b in zip(cpu.parameters(), dev.parameters()):
        torch.testing.assert_close(a, b.cpu(), rtol=1e-4, atol=1e-5)
    assert opt_d.state[dev[0].weight]["scale_exp_avg"].device.type == device


def test_float16_autocast_with_grad_scaler(device):
    model = _model().to(device)
    opt = build_optimizer("scaled_adam", model)
    scaler = torch.amp.GradScaler(device, init_scale=2.0 ** 16)
    _train(model, opt, 25, device, scaler=scaler, dtype=torch.float16)
    assert all(torch.isfinite(p).all() for p in model.parameters())
    steps = float(opt.state[model[0].weight]["step"])
    before = [p.detach().clone() for p in model.parameters()]
    x = torch.randn(4, 6, device=device)
    scaler.scale((model(x) * float("inf")).sum() * model.gain).backward()
    scaler.step(opt)                           # overflow: skipped
    scaler.update()
    assert float(opt.state[model[0].weight]["step"]) == steps
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_state_follows_a_model_moved_after_loading(device):
    cpu = _model()
    opt = build_optimizer("scaled_adam", cpu)
    _train(cpu, opt, 3, "cpu")
    model = _model()
    model.load_state_dict(cpu.state_dict())
    opt2 = build_optimizer("scaled_adam", model)
    opt2.load_state_dict(opt.state_dict())          # state on the CPU, as the model was
    model.to(device)
    _train(model, opt2, 2, device)
    assert opt2.state[model[0].weight]["exp_avg"].device.type == device
