"""ScheduledFloat, Bypass and Downsample/Upsample against their formulas."""
import math

import pytest
import torch

from variants.components.bypass import Bypass, NoBypass, make_bypass
from variants.components.param_limit import limit_param_value
from variants.components.downsample import Downsample, Upsample, downsampled_lengths
from variants.components.scheduled_float import ScheduledFloat, dropout_schedule


def test_scheduled_float_piecewise_linear():
    s = ScheduledFloat((0.0, 0.9), (20000.0, 0.2), default=0.5)
    assert float(s) == 0.5                      # batch_count never set
    s.batch_count = 10000.0
    assert float(s) == pytest.approx(0.55)
    s.batch_count = 50000.0
    assert float(s) == pytest.approx(0.2)
    s.batch_count = -5.0
    assert float(s) == pytest.approx(0.9)
    s.eval()
    assert float(s) == 0.5                      # eval: default
    three = ScheduledFloat((0, 0.2), (4000, 0.05), (16000, 0.0))
    assert three.value_at(10000) == pytest.approx(0.025)
    with pytest.raises(ValueError, match="increasing"):
        ScheduledFloat((10, 1.0), (5, 0.0))
    with pytest.raises(ValueError, match="at least one"):
        ScheduledFloat()
    assert dropout_schedule(0.0) == 0.0
    d = dropout_schedule(0.1)
    assert d.value_at(0) == pytest.approx(0.3) and d.value_at(20000) == pytest.approx(0.1)


def test_bypass_combination_formula():
    m = Bypass(3).eval()
    with torch.no_grad():
        m.bypass_scale.copy_(torch.tensor([0.0, 0.25, 1.0]))
    x, y = torch.randn(2, 4, 3), torch.randn(2, 4, 3)
    c = m.bypass_scale
    assert torch.allclose(m(x, y), (1 - c) * x + c * y, atol=1e-6)
    assert torch.equal(m(x, y)[..., 0], x[..., 0])
    assert torch.allclose(m(x, y)[..., 2], y[..., 2], atol=1e-6)
    assert sum(p.numel() for p in m.parameters()) == 3
    with pytest.raises(ValueError, match="equal shape"):
        m(x, y[:, :2])


def test_bypass_scale_limit_acts_on_gradient():
    # minimum 0.9 at first: c = 0.5 is below it, so a gradient that would lower c
    # (positive grad) is flipped; above the max 1.0, a negative grad is flipped
    c = torch.tensor([0.5, 0.95, 1.5], requires_grad=True)
    for _ in range(50):  # applied on a random 60 % of calls
        c.grad = None
        y = limit_param_value(c, 0.9, 1.0)
        if y is not c:
            break
    (y * torch.tensor([1.0, 1.0, -1.0])).sum().backward()
    assert c.grad.tolist() == [-1.0, 1.0, 1.0]
    sched = Bypass(4).scale_min
    sched.batch_count = 0.0
    assert float(sched) == pytest.approx(0.9)
    sched.batch_count = 20000.0
    assert float(sched) == pytest.approx(0.2)


def test_bypass_layer_skip_and_no_bypass():
    x, y = torch.zeros(64, 2, 3), torch.ones(64, 2, 3)
    m = Bypass(3, skip_rate=0.5).train()
    with torch.no_grad():
        m.bypass_scale.fill_(1.0)
    out = m(x, y)
    per_seq = out[:, 0, 0]
    assert set(per_seq.tolist()) <= {0.0, 1.0} and 0 < per_seq.sum() < 64
    assert torch.equal(NoBypass().train()(x, y), y)
    assert isinstance(make_bypass(3, enabled=False), NoBypass)
    assert sum(p.numel() for p in make_bypass(3, enabled=False).parameters()) == 0


def test_downsample_softmax_weighted_average():
    m = Downsample(3)
    with torch.no_grad():
        m.bias.copy_(torch.tensor([0.0, 1.0, 2.0]))
    w = torch.softmax(torch.tensor([0.0, 1.0, 2.0]), 0)
    x = torch.arange(2 * 7 * 2, dtype=torch.float32).reshape(2, 7, 2)
    lens = torch.tensor([7, 4])
    y, y_lens = m(x, lens)
    assert y.shape == (2, 3, 2) and y_lens.tolist() == [3, 2]
    assert torch.allclose(y[0, 0], w[0] * x[0, 0] + w[1] * x[0, 1] + w[2] * x[0, 2])
    # the last group is completed by repeating the last valid frame
    assert torch.allclose(y[0, 2], x[0, 6])
    assert torch.allclose(y[1, 1], w[0] * x[1, 3] + (w[1] + w[2]) * x[1, 3])
    # what lies beyond a length never matters
    x2 = x.clone()
    x2[1, 4:] = 1e6
    assert torch.equal(m(x2, lens)[0][1, :2], y[1, :2])
    assert downsampled_lengths(torch.tensor([1, 2, 3, 4, 5]), 2).tolist() == [1, 1, 2, 2, 3]
    with pytest.raises(ValueError, match="factor"):
        Downsample(0)


def test_upsample_repeats():
    x = torch.randn(2, 3, 4)
    y = Upsample(2)(x, 5)
    assert y.shape == (2, 5, 4)
    assert torch.equal(y[:, 0], x[:, 0]) and torch.equal(y[:, 1], x[:, 0]) and torch.equal(y[:, 4], x[:, 2])
    with pytest.raises(ValueError, match="cannot produce"):
        Upsample(2)(x, 7)
