"""Drawn decisions (``predrawn``, what train.compile uses): the same gradients as the eager
draw-in-the-forward path when the draw is the same, and the same draws for the same seed."""
from __future__ import annotations

import random

import pytest
import torch

from variants.components.balancer import Balancer
from variants.components.bias_norm import BiasNorm
from variants.components.bypass import Bypass
from variants.components.scheduled_float import (ScheduledFloat, decision_modules, draw_decisions,
                                                 set_predrawn)
from variants.components.whitener import Whitener

CPU = torch.device("cpu")


def _grads(module: torch.nn.Module, x: torch.Tensor, predrawn: bool, *extra) -> list[torch.Tensor]:
    set_predrawn(module, predrawn)
    module.train()
    if predrawn:
        draw_decisions(decision_modules(module), CPU)
    xr = x.clone().requires_grad_(True)
    out = module(xr, *extra) if extra else module(xr)
    (out * torch.linspace(-1.0, 2.0, out.shape[-1])).sum().backward()
    grads = [xr.grad] + [p.grad.clone() for p in module.parameters()]
    module.zero_grad(set_to_none=True)
    return grads


@pytest.mark.parametrize("min_abs,max_abs", [(5.0, 100.0), (0.01, 0.05), (0.2, 4.0)])
def test_balancer_acting_same_gradient(min_abs, max_abs):
    torch.manual_seed(0)
    x = torch.randn(3, 20, 16) * 0.5 + 0.3
    b = Balancer(16, min_positive=0.45, max_positive=0.55, min_abs=min_abs, max_abs=max_abs, prob=1.0)
    eager, drawn = _grads(b, x, False), _grads(b, x, True)
    assert not torch.equal(eager[0], torch.linspace(-1.0, 2.0, 16).expand_as(x))   # it acted
    torch.testing.assert_close(drawn[0], eager[0], rtol=1e-5, atol=1e-7)


def test_balancer_not_acting_is_identity_gradient():
    x = torch.randn(3, 20, 16)
    b = Balancer(16, min_abs=5.0, prob=ScheduledFloat((0.0, 0.0), default=0.0))
    b.batch_count = 10.0
    drawn = _grads(b, x, True)
    assert torch.equal(drawn[0], torch.linspace(-1.0, 2.0, 16).expand_as(x))


def test_whitener_same_gradient_and_probability():
    torch.manual_seed(0)
    x = torch.randn(40, 8) @ torch.randn(8, 8)            # far from white
    results = []
    for predrawn in (False, True):
        w = Whitener(num_groups=2, whitening_limit=1.0, prob=(0.5, 1.0), grad_scale=0.1)
        random.seed(3)
        results.append((_grads(w, x, predrawn)[0], w.prob))
    (g_eager, p_eager), (g_drawn, p_drawn) = results
    assert not torch.equal(g_eager, torch.linspace(-1.0, 2.0, 8).expand_as(x))
    torch.testing.assert_close(g_drawn, g_eager, rtol=1e-5, atol=1e-7)
    assert p_drawn == p_eager == 1.0


def test_whitener_below_limit_lowers_probability_without_gradient_change():
    x = torch.randn(400, 8)                                # nearly white
    w = Whitener(whitening_limit=50.0, prob=(0.5, 1.0), grad_scale=0.1)
    g = _grads(w, x, True)[0]
    assert torch.equal(g, torch.linspace(-1.0, 2.0, 8).expand_as(x))
    assert w.prob == 0.5


@pytest.mark.parametrize("module", [Bypass(6), BiasNorm(6)], ids=["bypass", "bias_norm"])
def test_param_limit_same_gradient(module):
    with torch.no_grad():                                 # outside the limits: the limit flips
        for p in module.parameters():
            p.fill_(-3.0)
    for m in module.modules():
        if hasattr(m, "batch_count"):
            m.batch_count = 100.0
    x, y = torch.randn(2, 5, 6), torch.randn(2, 5, 6)
    extra = (y,) if isinstance(module, Bypass) else ()
    grads = []
    for predrawn in (False, True):
        random.seed(1)        # the first draw of seed 1 (0.134) acts in both paths (< 0.6)
        torch.manual_seed(0)
        grads.append(_grads(module, x, predrawn, *extra))
    for a, b in zip(*grads):
        torch.testing.assert_close(b, a)


def test_same_seed_same_decisions():
    model = torch.nn.Sequential(Balancer(4, prob=0.5), Whitener(), Bypass(4), BiasNorm(4))
    set_predrawn(model)
    modules = decision_modules(model)
    runs = []
    for _ in range(2):
        random.seed(7)
        steps = []
        for _ in range(5):
            draw_decisions(modules, CPU)
            steps.append([m._decision.clone() for m in modules if getattr(m, "_decision", None) is not None])
        runs.append(steps)
    for a, b in zip(*runs):
        assert all(torch.equal(u, v) for u, v in zip(a, b))
    assert any(not torch.equal(runs[0][0][0], s[0]) for s in runs[0][1:])   # the draws change
