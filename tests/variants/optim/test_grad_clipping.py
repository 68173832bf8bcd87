"""Median-relative gradient clipping: when thresholds are set, what they are, what is clipped."""
from __future__ import annotations

import pytest
import torch

from variants.optim import MedianGradClipping


def _upper_median(values: list[float]) -> float:
    return sorted(values)[len(values) // 2]


def test_no_clipping_before_the_first_estimate():
    c = MedianGradClipping(2.0, update_period=100)
    for step in range(10):
        assert c.scale_for(1000.0 ** step) == 1.0        # wild norms, but no threshold yet
    assert c.threshold is None


def test_early_estimates_are_doubled_and_periodic_ones_are_not():
    c = MedianGradClipping(2.0, update_period=50)
    norms = [1.0 + 0.01 * i for i in range(120)]
    for step, n in enumerate(norms):
        c.scale_for(n)
        if step == 10:
            assert c.threshold == pytest.approx(2 * 2.0 * _upper_median(norms[:11]))
        if step == 20:
            assert c.threshold == pytest.approx(2 * 2.0 * _upper_median(norms[:21]))
        if step == 40:
            assert c.threshold == pytest.approx(2 * 2.0 * _upper_median(norms[:41]))
        if step == 50:      # the last 50 norms, at steps 1..50, fill the ring buffer
            assert c.threshold == pytest.approx(2.0 * _upper_median(norms[1:51]))
        if step == 100:
            assert c.threshold == pytest.approx(2.0 * _upper_median(norms[51:101]))
    assert c.num_clipped_total == 0


def test_outlier_is_scaled_to_the_threshold_and_counted():
    c = MedianGradClipping(2.0, update_period=100)
    for _ in range(11):
        c.scale_for(1.0)
    assert c.threshold == pytest.approx(4.0)            # 2 x median, doubled early on
    assert c.scale_for(3.9) == 1.0
    assert c.scale_for(40.0) == pytest.approx(0.1)
    assert c.last_event is not None and c.last_event.grad_norm == 40.0
    assert c.num_clipped_total == 1
    assert c.scale_for(float("inf")) == 0.0
    assert c.num_clipped_total == 2


def test_non_finite_median_is_an_error():
    c = MedianGradClipping(2.0, update_period=100)
    with pytest.raises(RuntimeError, match="not finite"):
        for _ in range(11):
            c.scale_for(float("nan"))


def test_state_round_trip_and_bad_settings():
    c = MedianGradClipping(2.0, update_period=20)
    for i in range(33):
        c.scale_for(1.0 + (i % 5))
    d = MedianGradClipping(2.0, update_period=20)
    d.load_state_dict(c.state_dict())
    assert (d.step, d.threshold, d.num_clipped_total) == (c.step, c.threshold, c.num_clipped_total)
    assert torch.equal(d.norms, c.norms)
    assert [d.scale_for(x) for x in (2.0, 50.0)] == [c.scale_for(x) for x in (2.0, 50.0)]
    with pytest.raises(ValueError, match="clipping_update_period"):
        MedianGradClipping(2.0, update_period=30).load_state_dict(c.state_dict())
    with pytest.raises(ValueError, match="clipping_scale"):
        MedianGradClipping(-1.0)
    with pytest.raises(ValueError, match="clipping_update_period"):
        MedianGradClipping(2.0, update_period=0)
