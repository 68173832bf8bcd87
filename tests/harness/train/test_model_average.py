import torch
from torch import nn

from harness.evaluate import checkpoint
from harness.evaluate.model_average import (average_between, average_plain, averaged_weights,
                                         new_average, update_average)


def _model(value: float) -> nn.Module:
    m = nn.Linear(2, 1)
    with torch.no_grad():
        m.weight.fill_(value)
        m.bias.fill_(value)
    return m


def test_running_average_is_the_mean_of_the_periodic_snapshots():
    period = 2
    avg = new_average(_model(0.0))
    values = [1.0, 3.0, 8.0]  # weights at steps 2, 4, 6
    for i, v in enumerate(values, start=1):
        update_average(avg, _model(v), step=i * period, period=period)
    assert avg.weight.dtype == torch.float64
    assert torch.allclose(avg.weight, torch.full_like(avg.weight, sum(values) / 3))


def test_average_between_two_epochs_recovers_the_mean_over_that_range():
    period = 1
    avg = new_average(_model(0.0))
    snaps = {}
    for step, v in enumerate([2.0, 4.0, 6.0, 10.0], start=1):
        update_average(avg, _model(v), step, period)
        snaps[step] = {"model_avg": {k: t.clone() for k, t in avg.state_dict().items()},
                       "step": step, "average_period": period}
    # steps (2, 4]: weights 6 and 10 -> mean 8
    out = average_between(snaps[2], snaps[4])
    assert torch.allclose(out["weight"], torch.full_like(out["weight"], 8.0))
    # from the start of training the running average itself is the answer
    out = average_between(None, snaps[4])
    assert torch.allclose(out["weight"], torch.full_like(out["weight"], 5.5))


def test_plain_average_and_decode_time_fallbacks(tmp_path):
    states = [_model(v).state_dict() for v in (1.0, 2.0, 6.0)]
    assert torch.allclose(average_plain(states)["bias"], torch.tensor([3.0]))
    # fewer steps than one averaging period: decode with the model itself, not the untouched average
    m = _model(5.0)
    checkpoint.atomic_save({"model": m.state_dict(), "model_avg": new_average(_model(0.0)).state_dict(),
                            "step": 3, "average_period": 200}, checkpoint.epoch_path(tmp_path, 1))
    w = averaged_weights(tmp_path, epoch=1, avg=1, use_averaged_model=True)
    assert torch.allclose(w["weight"], m.weight) and w["weight"].dtype == torch.float32


def test_a_running_average_that_cannot_cover_the_epochs_falls_back_to_plain_weights(tmp_path):
    """max_steps 6, average_period 5, epochs ending at steps 5 and 6: (5, 6] holds no multiple
    of 5, so no running average of epoch 2 exists; the decode uses epoch 2's own weights, says
    why and what to change, and reports avg 1 without the running average (its decode key)."""
    from harness.evaluate.model_average import average_epochs

    avg = new_average(_model(0.0))
    update_average(avg, _model(4.0), step=5, period=5)
    for epoch, step, value in ((1, 5, 4.0), (2, 6, 7.0)):
        checkpoint.atomic_save({"model": _model(value).state_dict(), "model_avg": avg.state_dict(),
                                "step": step, "average_period": 5}, checkpoint.epoch_path(tmp_path, epoch))
    out = average_epochs(tmp_path, epoch=2, avg=1, use_averaged_model=True)
    assert torch.allclose(out.weights["weight"], torch.full_like(out.weights["weight"], 7.0))
    assert (out.avg, out.averaged_model) == (1, False)
    assert out.note.startswith("epoch 2 (its own weights; not the running average: no multiple of "
                               "train.average_period 5 lies between the steps of epoch 1 (5) and epoch 2 (6)")
    assert "lower average_period" in out.note
    # more epochs asked for than exist: the ones that exist, counted as what they are
    out = average_epochs(tmp_path, epoch=2, avg=20, use_averaged_model=False)
    assert (out.avg, out.averaged_model) == (2, False) and "only 2 epoch(s) exist" in out.note
    assert torch.allclose(out.weights["weight"], torch.full_like(out.weights["weight"], 5.5))
    out = average_epochs(tmp_path, epoch=2, avg=20, use_averaged_model=True)
    assert (out.avg, out.averaged_model) == (2, True) and out.note == "epochs 1-2 (running average of steps 0-5; only 2 epoch(s) exist)"
