"""Eden (eq. 8) and Noam (section 4.0.3) against their formulas, and the builders."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from variants.optim import (
    Eden, Noam, ScaledAdam, build_optimizer, build_scheduler, default_scheduler_for, eden_lr,
    noam_lr, schedule_curve,
)

torch.set_num_threads(1)


def eq8(t, e, base=0.045, a_step=7500.0, a_epoch=3.5, t_warm=500.0, start=0.5):
    linear = 1.0 if t >= t_warm else start + (1 - start) * t / t_warm
    return (base * ((t * t + a_step ** 2) / a_step ** 2) ** -0.25
            * ((e * e + a_epoch ** 2) / a_epoch ** 2) ** -0.25 * linear)


@pytest.mark.parametrize("t,e", [(0, 0), (1, 0), (250, 0), (499, 0), (500, 0), (7500, 3.5),
                                 (12345, 2), (100000, 30), (3000, 1.25)])
def test_eden_matches_eq8(t, e):
    assert eden_lr(t, e) == pytest.approx(eq8(t, e), rel=1e-12)


def test_eden_landmarks():
    assert eden_lr(0, 0) == pytest.approx(0.0225)                 # warm-up starts at 0.5
    assert eden_lr(250, 0) == pytest.approx(0.045 * 0.75 * (1 + (250 / 7500) ** 2) ** -0.25)
    assert eden_lr(7500, 3.5) == pytest.approx(0.045 / math.sqrt(2))   # 2^-0.25 twice
    assert eden_lr(600, 0, base_lr=0.1, lr_batches=600, warmup_batches=0) == pytest.approx(0.1 * 2 ** -0.25)


def test_noam_matches_formula():
    def formula(t, base=7.5):
        return base * 512 ** -0.5 * min(t ** -0.5, t * 10000 ** -1.5)

    for t in (1, 100, 9999, 10000, 10001, 40000):
        assert noam_lr(t) == pytest.approx(formula(t), rel=1e-12)
    assert noam_lr(10000) == pytest.approx(7.5 / (math.sqrt(512) * 100))
    assert noam_lr(40000) == pytest.approx(7.5 / (math.sqrt(512) * 200))
    assert noam_lr(0) == 0.0
    peak = max(noam_lr(t) for t in range(1, 30000, 7))
    assert peak <= noam_lr(10000) + 1e-15


def _opt(name="scaled_adam", model=None):
    model = model or nn.Linear(3, 2)
    return build_optimizer(name, model)


def test_eden_scheduler_drives_lrs_by_batch_and_epoch():
    opt = _opt()
    sched = build_scheduler("eden", opt)
    assert isinstance(sched, Eden)
    assert sched.get_last_lr() == [pytest.approx(0.0225)]       # set at construction
    sched.step_batch(7500)
    sched.step_epoch(3.5)
    assert sched.get_last_lr() == [pytest.approx(0.045 / math.sqrt(2))]
    assert opt.param_groups[0]["lr"] == sched.get_last_lr()[0]
    sched.step_epoch(2.75)                                       # fractional: data seen, in epochs
    assert sched.get_last_lr() == [pytest.approx(eq8(7500, 2.75))]
    sched.step_batch()                                           # no argument: one more batch
    assert sched.batch == 7501


def test_noam_scheduler_drives_adam():
    opt = _opt("adam")
    assert isinstance(opt, torch.optim.Adam)
    assert opt.param_groups[0]["betas"] == (0.9, 0.98) and opt.param_groups[0]["eps"] == 1e-9
    sched = build_scheduler(default_scheduler_for("adam"), opt)
    assert isinstance(sched, Noam)
    assert sched.get_last_lr() == [pytest.approx(noam_lr(1))]   # first update is update 1
    sched.step_batch(9999)
    assert sched.get_last_lr() == [pytest.approx(noam_lr(10000))]
    sched.step_epoch(5)                                          # Noam ignores epochs
    assert sched.get_last_lr() == [pytest.approx(noam_lr(10000))]


def test_per_group_lr_scales_follow_the_schedule():
    model = nn.Sequential(nn.Linear(3, 3), nn.Linear(3, 2))
    model[0].lr_scale = 0.5                                      # the authors' module attribute
    opt = build_optimizer("scaled_adam", model, lr_scales={"1.bias": 0.1})
    lrs = sorted(g["lr"] for g in opt.param_groups)
    assert lrs == pytest.approx([0.0045, 0.0225, 0.045])
    sched = build_scheduler("eden", opt)
    sched.step_batch(3000)
    f = eq8(3000, 0) / 0.045
    assert sorted(sched.get_last_lr()) == pytest.approx([0.0045 * f, 0.0225 * f, 0.045 * f])
    with pytest.raises(ValueError, match="lr_scales names no parameter"):
        build_optimizer("scaled_adam", model, lr_scales={"encoder": 0.5})


def test_scheduler_state_round_trip():
    opt = _opt()
    sched = build_scheduler("eden", opt, lr_batches=5000, lr_epochs=6)
    sched.step_batch(1234)
    sched.step_epoch(2)
    state = sched.state_dict()
    assert state["hyperparameters"]["lr_batches"] == 5000
    opt2 = _opt()
    sched2 = build_scheduler("eden", opt2, lr_batches=5000, lr_epochs=6)
    sched2.load_state_dict(state)
    assert sched2.get_last_lr() == sched.get_last_lr()
    assert opt2.param_groups[0]["lr"] == opt.param_groups[0]["lr"]
    with pytest.raises(ValueError, match="noam"):
        build_scheduler("noam", _opt("adam")).load_state_dict(state)


def test_schedule_curves():
    eden = schedule_curve("eden", [0, 500, 1999, 2000, 9000], batches_per_epoch=1000)
    assert [s for s, _ in eden] == [0, 500, 1999, 2000, 9000]
    for (s, lr) in eden:
        assert lr == pytest.approx(eq8(s, s // 1000))
    noam = schedule_curve("noam", range(0, 30001, 10000), base=5.0)
    assert noam == [(t, pytest.approx(noam_lr(t, base=5.0))) for t in range(0, 30001, 10000)]
    with pytest.raises(ValueError, match="batches_per_epoch"):
        schedule_curve("eden", [1, 2])
    with pytest.raises(ValueError, match="unknown argument"):
        schedule_curve("noam", [1], batches_per_epoch=3)
    with pytest.raises(ValueError, match="allowed: eden, noam"):
        schedule_curve("cosine", [1])


def test_builder_errors_list_what_is_allowed():
    with pytest.raises(ValueError, match="allowed: scaled_adam, adam"):
        build_optimizer("sgd", nn.Linear(2, 2))
    with pytest.raises(ValueError, match="allowed: eden, noam"):
        build_scheduler("cosine", _opt())
    with pytest.raises(ValueError, match="allowed: scaled_adam, adam"):
        default_scheduler_for("adamw")
    with pytest.raises(ValueError, match="unknown argument.*clip"):
        build_optimizer("scaled_adam", nn.Linear(2, 2), clip=2.0)
    with pytest.raises(ValueError, match="unknown argument.*alpha_step"):
        build_scheduler("eden", _opt(), alpha_step=3)
    with pytest.raises(ValueError, match="batch_count"):
        build_scheduler("eden", _opt()).step_batch(-1)
    with pytest.raises(ValueError, match="warmup_start"):
        eden_lr(10, 0, warmup_start=1.5)
    assert default_scheduler_for("scaled_adam") == "eden"


def test_build_optimizer_inputs():
    model = nn.Linear(4, 3)
    opt = build_optimizer("scaled_adam", model)
    assert isinstance(opt, ScaledAdam) and opt.param_groups[0]["param_names"] == ["weight", "bias"]
    assert opt.clipping.clipping_scale == 2.0 and opt.param_groups[0]["lr"] == 0.045
    opt = build_optimizer("scaled_adam", model.parameters(), lr=0.03, clipping_scale=None)
    assert opt.param_groups[0]["lr"] == 0.03 and not opt.clipping.enabled
    opt = build_optimizer("adam", list(model.named_parameters()))
    assert opt.param_groups[0]["lr"] == 7.5
    with pytest.raises(ValueError, match="empty parameter list"):
        build_optimizer("adam", [])
    with pytest.raises(ValueError, match="lr_scales needs a module"):
        build_optimizer("adam", model.parameters(), lr_scales={"weight": 2.0})
