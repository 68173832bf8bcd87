"""Balancer and Whitener: identity forward; gradient terms in backward (appendix A.3)."""
import math

import pytest
import torch

from variants.components.balancer import (Balancer, abs_to_rms, balancer_loss, make_balancer,
                                          proportion_positive_to_mean)
from variants.components.whitener import Whitener, make_whitener, whitening_metric


def test_balancer_constraint_conversions():
    assert proportion_positive_to_mean(0.5) == pytest.approx(0.0, abs=1e-9)
    p = 0.3
    expected = math.atanh(2 * p - 1) / (math.sqrt(math.pi) * math.log(2))
    assert proportion_positive_to_mean(p) == pytest.approx(expected)
    assert abs_to_rms(2.0) == pytest.approx(2.0 * math.sqrt(math.pi / 2))


def test_balancer_identity_forward_and_gradient_when_violated():
    torch.manual_seed(0)
    m = Balancer(4, channel_dim=-1, min_positive=0.4, max_positive=0.6, min_abs=0.2,
                 max_abs=1.0, prob=1.0).train()
    # channel 0 is far too large and always positive: both constraints violated
    x = (torch.randn(50, 4) + torch.tensor([20.0, 0.0, 0.0, 0.0])).requires_grad_(True)
    y = m(x)
    assert torch.equal(y, x)
    g = torch.randn(50, 4)
    y.backward(g)
    extra = x.grad - g
    # channels inside the limits are untouched (up to the loss-gradient RMS floor)
    assert extra[:, 0].abs().sum() > 0
    # g' = grad of eq. 9, scaled by alpha / RMS[g'] * |g| (alpha = 0.04), per channel
    xd = x.detach().clone().requires_grad_(True)
    limits = (proportion_positive_to_mean(0.4), proportion_positive_to_mean(0.6),
              abs_to_rms(0.2), abs_to_rms(1.0))
    balancer_loss(xd, 1, *limits).sum().backward()
    lg = xd.grad
    expected = g.abs() * lg * 0.04 / lg.pow(2).mean(0, keepdim=True).sqrt().clamp(min=1e-20)
    assert torch.allclose(extra, expected, atol=1e-6)
    assert extra[:, 0].abs().min() > 0 and lg[:, 1:].abs().max() < lg[:, 0].abs().max()


def test_balancer_no_op_in_eval_and_when_satisfied():
    m = Balancer(3, channel_dim=1, prob=1.0, min_abs=0.0, max_abs=100.0,
                 min_positive=0.0, max_positive=1.0)
    x = torch.randn(8, 3, 5, requires_grad=True)
    g = torch.randn(8, 3, 5)
    m.train()(x).backward(g)
    assert torch.allclose(x.grad, g)
    x.grad = None
    m.eval()(x).backward(g)
    assert torch.equal(x.grad, g)
    assert isinstance(make_balancer(3, enabled=False), torch.nn.Identity)
    loss = balancer_loss(torch.ones(10, 2), 1, -1.0, 1.0, 0.5, 2.0)
    assert loss.shape == (1, 2)


def test_whitening_metric_formula():
    torch.manual_seed(0)
    x = torch.randn(200, 6)
    xc = x - x.mean(0)
    c = xc.t() @ xc
    eig = torch.linalg.eigvalsh(c)
    expected = (eig ** 2).mean() / eig.mean() ** 2
    assert whitening_metric(x).item() == pytest.approx(expected.item(), rel=1e-4)
    assert whitening_metric(torch.randn(5000, 4)).item() == pytest.approx(1.0, abs=0.05)
    with pytest.raises(ValueError, match="divisible"):
        whitening_metric(x, num_groups=4)


def test_whitener_identity_forward_and_gradient_above_limit():
    torch.manual_seed(0)
    w = Whitener(num_groups=1, whitening_limit=2.0, prob=1.0, grad_scale=0.01).train()
    # one dominating direction: metric far above the limit
    x = (torch.randn(100, 1) * torch.ones(1, 8) * 10 + 0.1 * torch.randn(100, 8)).requires_grad_(True)
    assert whitening_metric(x.detach()).item() > 2.0
    y = w(x)
    assert torch.equal(y, x)
    g = torch.randn(100, 8)
    y.backward(g)
    extra = x.grad - g
    assert extra.norm().item() == pytest.approx(0.01 * g.norm().item(), rel=1e-4)
    # white input: below the limit, gradient untouched
    x2 = torch.randn(1000, 8, requires_grad=True)
    w(x2).backward(g.repeat(10, 1))
    assert torch.equal(x2.grad, g.repeat(10, 1))
    with pytest.raises(ValueError, match="whitening_limit"):
        Whitener(whitening_limit=0.5)
    assert isinstance(make_whitener(enabled=False), torch.nn.Identity)


@pytest.mark.parametrize("mode", ["reference", "fused", "c_loop"])
def test_whitener_probability_adapts_on_the_device(mode, monkeypatch, one_thread):
    """prob = (min, max): a step acts when the host draw is within the current probability,
    which the metric sets on the device (max above the limit, min below) — no host read
    (the C loops of the CPU path, ``c_loop``, read it on the host: no synchronisation
    there; the same decisions)."""
    import random

    from torch.utils._python_dispatch import TorchDispatchMode

    from variants import fast_paths
    from variants.components import cpu_kernels

    fused = mode != "reference"

    class HostSyncs(TorchDispatchMode):             # records each value read back to the host
        def __enter__(self):
            self.calls = []
            return super().__enter__()

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func is torch.ops.aten._local_scalar_dense.default:
                self.calls.append(func)
            return func(*args, **(kwargs or {}))

    monkeypatch.setattr(fast_paths, "enabled", lambda: fused)
    torch.manual_seed(0)
    w = Whitener(num_groups=1, whitening_limit=2.0, prob=(0.1, 0.5), grad_scale=0.01).train()
    white = torch.randn(1000, 8)
    skewed = torch.randn(1000, 1) * torch.ones(1, 8) * 10 + 0.1 * torch.randn(1000, 8)
    g = torch.randn(1000, 8)

    def step(x, draw):
        x = x.clone().requires_grad_(True)
        monkeypatch.setattr(random, "random", lambda: draw)
        with HostSyncs() as syncs, cpu_kernels.disabled(mode != "c_loop"):
            w(x).backward(g)
        assert syncs.calls == [] or mode == "c_loop"
        return not torch.equal(x.grad, g)

    assert w.prob == 0.5
    assert not step(white, 0.3)                 # acts (0.3 <= 0.5), below the limit: prob -> min
    assert w.prob == 0.1
    assert not step(skewed, 0.3)                # 0.3 > 0.1: does not act, prob stays at min
    assert w.prob == 0.1
    assert step(skewed, 0.05)                   # acts, above the limit: gradient added, prob -> max
    assert w.prob == 0.5
    assert step(skewed, 0.4)
    assert not step(skewed, 0.6)                # beyond max: the op is not even applied
    w.prob = 0.1                                # set from a checkpoint (whitener_probs)
    assert not step(skewed, 0.3) and w.prob == 0.1
