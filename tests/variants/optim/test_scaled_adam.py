"""ScaledAdam against Algorithm 1 of the paper, written out independently here."""
from __future__ import annotations

import copy
import io
import logging
import math

import pytest
import torch
from torch import nn

from variants.optim import ScaledAdam, build_optimizer, build_scheduler, optimizer_state_bytes

torch.set_num_threads(1)
B1, B2, ETA, EPS = 0.9, 0.98, 0.1, 1e-8


class Algorithm1:
    """Algorithm 1 (appendix A.1.1) for one non-scalar tensor, in float64, descent form."""

    def __init__(self, theta: torch.Tensor):
        self.theta = theta.detach().double().clone()
        self.m = torch.zeros_like(self.theta)
        self.v = torch.zeros_like(self.theta)
        self.n = 0.0
        self.w = 0.0
        self.t = 0

    def step(self, g: torch.Tensor, lr: float) -> torch.Tensor:
        g = g.double()
        self.t += 1
        t = self.t
        h = float((g * self.theta).sum())                       # h_t = g_t . theta_{t-1}
        r = float(self.theta.pow(2).mean().sqrt())              # r_{t-1} = RMS(theta_{t-1})
        self.m = B1 * self.m + (1 - B1) * g
        self.v = B2 * self.v + (1 - B2) * g * g
        corr = math.sqrt(1 - B2 ** t) / (1 - B1 ** t)
        delta = lr * r * corr * self.m / (self.v.sqrt() + EPS)
        self.n = B1 * self.n + (1 - B1) * h
        self.w = B2 * self.w + (1 - B2) * h * h
        delta_r = ETA * lr * corr * self.n / (math.sqrt(self.w) + EPS) * self.theta
        self.theta = self.theta - delta - delta_r
        return self.theta


def _opt(params, **kw) -> ScaledAdam:
    kw.setdefault("clipping_scale", None)
    return ScaledAdam(params, **kw)


def test_one_step_matches_algorithm_1_and_its_closed_form():
    torch.manual_seed(0)
    theta0 = torch.randn(2, 3, dtype=torch.float64) * 0.3
    g = torch.randn(2, 3, dtype=torch.float64)
    p = nn.Parameter(theta0.clone())
    p.grad = g.clone()
    opt = _opt([p], lr=0.05)
    opt.step()
    ref = Algorithm1(theta0).step(g, 0.05)
    torch.testing.assert_close(p.detach(), ref, rtol=1e-10, atol=1e-12)
    # at t = 1: m/(sqrt(v)+eps) * corr = sign(g) and n/(sqrt(w)+eps) * corr = sign(h)
    r = theta0.pow(2).mean().sqrt()
    h = (g * theta0).sum()
    closed = theta0 - 0.05 * r * g.sign() - ETA * 0.05 * h.sign() * theta0
    torch.testing.assert_close(p.detach(), closed, rtol=1e-6, atol=1e-8)


def test_several_steps_several_tensors_match_algorithm_1():
    torch.manual_seed(1)
    shapes = [(3, 4), (3, 4), (3, 4), (5,), (2, 1, 3)]       # same-shape tensors batch together
    thetas = [torch.randn(s) * (0.1 + i) for i, s in enumerate(shapes)]
    params = [nn.Parameter(t.clone()) for t in thetas]
    refs = [Algorithm1(t) for t in thetas]
    opt = _opt(params, lr=0.02)
    lrs = [0.02, 0.03, 0.01, 0.02, 0.025, 0.02]
    for lr in lrs:
        for group in opt.param_groups:
            group["lr"] = lr
        grads = [torch.randn(s) for s in shapes]
        for p, g in zip(params, grads):
            p.grad = g.clone()
        opt.step()
        for ref, g in zip(refs, grads):
            ref.step(g, lr)
    for p, ref in zip(params, refs):
        torch.testing.assert_close(p.detach().double(), ref.theta, rtol=2e-5, atol=1e-6)
    assert all(float(opt.state[p]["step"]) == len(lrs) for p in params)


def test_parameters_without_gradient_skip_the_step_and_keep_their_own_count():
    torch.manual_seed(4)
    thetas = [torch.randn(3, 3), torch.randn(3, 3)]
    params = [nn.Parameter(t.clone()) for t in thetas]
    refs = [Algorithm1(t) for t in thetas]
    opt = _opt(params, lr=0.03)
    for step in range(5):
        for i, (p, ref) in enumerate(zip(params, refs)):
            if i == 1 and step in (1, 2):
                p.grad = None                                   # e.g. an unused module
                continue
            g = torch.randn(3, 3)
            p.grad = g.clone()
            ref.step(g, 0.03)
        opt.step()
    assert [float(opt.state[p]["step"]) for p in params] == [5.0, 3.0]
    for p, ref in zip(params, refs):
        torch.testing.assert_close(p.detach().double(), ref.theta, rtol=2e-5, atol=1e-6)


def test_trains_a_small_regression():
    gen = torch.Generator().manual_seed(8)
    x = torch.randn(64, 8, generator=gen)
    y = x @ torch.randn(8, 2, generator=gen) * 0.5 + 0.3
    for name in ("scaled_adam", "adam"):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 2))
        opt = build_optimizer(name, model)
        sched = build_scheduler("eden" if name == "scaled_adam" else "noam", opt,
                                **({} if name == "scaled_adam" else {"warmup": 50}))
        first = None
        for i in range(150):
            loss = ((model(x) - y) ** 2).mean()
            first = first if first is not None else loss.item()
            loss.backward()
            opt.step()
            opt.zero_grad()
            sched.step_batch(i + 1)
        assert loss.item() < 0.1 * first, name


def test_scalar_parameters_get_adam_with_eta_lr_and_are_clamped():
    p = nn.Parameter(torch.tensor([0.5], dtype=torch.float64))
    q = nn.Parameter(torch.tensor(9.99, dtype=torch.float64))
    opt = _opt([p, q], lr=0.1)
    m = v = 0.0
    theta = 0.5
    for t, g in enumerate([1.0, -2.0, 0.5], start=1):
        p.grad = torch.tensor([g], dtype=torch.float64)
        q.grad = torch.tensor(-1.0, dtype=torch.float64)    # pushes q up past scalar_max
        opt.step()
        m = B1 * m + (1 - B1) * g
        v = B2 * v + (1 - B2) * g * g
        theta -= 0.1 * ETA * math.sqrt(1 - B2 ** t) / (1 - B1 ** t) * m / (math.sqrt(v) + EPS)
    assert p.item() == pytest.approx(theta, rel=1e-12)
    assert q.item() == 10.0
    assert "scale_exp_avg" not in opt.state[p]


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_scale_term_moves_rms_in_direction_of_scale_gradient(sign):
    torch.manual_seed(2)
    theta0 = torch.randn(8, 8) * 0.2
    g = sign * theta0 + 0.05 * torch.randn(8, 8)              # h = sum(g * theta) has this sign
    assert math.copysign(1.0, float((g * theta0).sum())) == sign
    rms = {}
    for eta in (0.0, 0.1):
        p = nn.Parameter(theta0.clone())
        p.grad = g.clone()
        _opt([p], lr=0.04, eta=eta).step()
        rms[eta] = float(p.detach().pow(2).mean().sqrt())
    # positive scale gradient: learning the scale shrinks the tensor; negative: grows it
    assert (rms[0.1] - rms[0.0]) * sign < 0
    r0 = float(theta0.pow(2).mean().sqrt())
    assert abs(rms[0.1] - rms[0.0]) == pytest.approx(ETA * 0.04 * r0, rel=0.05)


def test_rms_limits():
    # above param_max_rms the scale update pulls the RMS back to the limit
    big = nn.Parameter(torch.full((4, 4), 3.5))
    big.grad = -torch.ones(4, 4)                               # wants to grow
    _opt([big], lr=1e-6).step()
    assert float(big.detach().pow(2).mean().sqrt()) == pytest.approx(3.0, rel=1e-4)
    # a zero tensor still moves, at the param_min_rms-scaled rate
    zero = nn.Parameter(torch.zeros(3, 3))
    zero.grad = torch.randn(3, 3)
    _opt([zero], lr=0.1).step()
    torch.testing.assert_close(zero.detach(), -0.1 * 1e-5 * zero.grad.sign(), rtol=1e-5, atol=0)


def _noisy_steps(opt, params, n, gen, scale=1.0):
    for _ in range(n):
        for p in params:
            p.grad = torch.randn(p.shape, generator=gen) * scale
        opt.step()


def test_clipping_engages_on_outlier_gradient_and_reports_it(caplog):
    gen = torch.Generator().manual_seed(3)
    model = nn.Sequential(nn.Linear(6, 6), nn.Linear(6, 4))
    opt = build_optimizer("scaled_adam", model, lr=0.01)       # clipping_scale 2.0 by default
    params = list(model.parameters())
    _noisy_steps(opt, params, 30, gen)
    assert opt.clipping.threshold is not None and opt.clipping.num_clipped_total == 0
    assert opt.last_clip is None
    normal_norm = opt.clipping.last_norm
    for p in params:
        p.grad = torch.randn(p.shape, generator=gen)
    model[1].weight.grad *= 1000.0
    before = model[1].weight.detach().clone()
    with caplog.at_level(logging.WARNING, logger="variants.optim.scaled_adam"):
        opt.step()
    ev = opt.last_clip
    assert ev is not None and ev.step == 30
    assert ev.grad_norm > 100 * normal_norm
    assert ev.scale == pytest.approx(ev.threshold / ev.grad_norm) and ev.scale < 0.05
    assert ev.dominant_param == "1.weight" and ev.dominant_share > 0.99
    assert opt.clipping.num_clipped_total == 1
    assert "1.weight" in caplog.text and "threshold" in caplog.text
    # the clipped gradient gives an ordinary-sized update, not a 1000x one
    assert (model[1].weight.detach() - before).abs().max() < 0.1


def test_non_finite_gradient_is_not_applied():
    gen = torch.Generator().manual_seed(4)
    p = nn.Parameter(torch.randn(4, 4, generator=gen))
    opt = ScaledAdam([p], lr=0.01)
    _noisy_steps(opt, [p], 12, gen)
    p.grad = torch.full((4, 4), float("nan"))
    opt.step()
    assert opt.clipping.last_scale == 0.0
    assert torch.isfinite(p).all() and torch.isfinite(opt.state[p]["exp_avg_sq"]).all()


def _make(seed=5):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 3))
    model.register_parameter("gain", nn.Parameter(torch.tensor(1.0)))
    return model


def _train(model, opt, steps, gen, sched=None, start=0):
    for i in range(steps):
        x = torch.randn(16, 5, generator=gen)
        loss = (model(x) ** 2).mean() * model.gain
        loss.backward()
        opt.step()
        opt.zero_grad()
        if sched is not None:
            sched.step_batch(start + i + 1)


def test_state_dict_round_trip_is_exact():
    model = _make()
    opt = build_optimizer("scaled_adam", model)
    sched = build_scheduler("eden", opt)
    _train(model, opt, 25, torch.Generator().manual_seed(0), sched)
    buf = io.BytesIO()
    torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict()}, buf)
    buf.seek(0)
    ckpt = torch.load(buf, weights_only=False)
    model2 = _make(seed=99)
    model2.load_state_dict(ckpt["model"])
    opt2 = build_optimizer("scaled_adam", model2)
    sched2 = build_scheduler("eden", opt2)
    opt2.load_state_dict(ckpt["opt"])
    sched2.load_state_dict(ckpt["sched"])
    assert sched2.get_last_lr() == sched.get_last_lr()
    sd1, sd2 = opt.state_dict(), opt2.state_dict()
    assert sd1["clipping"]["threshold"] == sd2["clipping"]["threshold"]
    for k, st in sd1["state"].items():
        for name, value in st.items():
            assert torch.equal(value, sd2["state"][k][name]), (k, name)
    _train(model, opt, 5, torch.Generator().manual_seed(1), sched, start=25)
    _train(model2, opt2, 5, torch.Generator().manual_seed(1), sched2, start=25)
    for a, b in zip(model.parameters(), model2.parameters()):
        assert torch.equal(a, b)
    assert opt2.clipping.step == opt.clipping.step == 30


def test_grad_scaler_mixed_precision():
    gen_a, gen_b = torch.Generator().manual_seed(2), torch.Generator().manual_seed(2)
    plain, scaled = _make(), _make()
    opt_a = ScaledAdam(plain.parameters(), lr=0.02)
    opt_b = ScaledAdam(scaled.parameters(), lr=0.02)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 12)
    for _ in range(4):
        x_a, x_b = torch.randn(16, 5, generator=gen_a), torch.randn(16, 5, generator=gen_b)
        ((plain(x_a) ** 2).mean() * plain.gain).backward()
        opt_a.step()
        opt_a.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = (scaled(x_b).float() ** 2).mean() * scaled.gain
        scaler.scale(loss).backward()
        scaler.step(opt_b)
        scaler.update()
        opt_b.zero_grad()
    for a, b in zip(plain.parameters(), scaled.parameters()):
        torch.testing.assert_close(a, b, rtol=0.05, atol=2e-3)     # bf16 forward
    # an overflowing step is skipped by the scaler: nothing changes
    before = [p.detach().clone() for p in scaled.parameters()]
    steps = [float(opt_b.state[p]["step"]) for p in scaled.parameters()]
    scaler.scale((scaled(torch.randn(2, 5)) * float("inf")).sum()).backward()
    scaler.step(opt_b)
    scaler.update()
    assert all(torch.equal(a, b) for a, b in zip(before, scaled.parameters()))
    assert steps == [float(opt_b.state[p]["step"]) for p in scaled.parameters()]


def test_works_under_ddp(tmp_path):
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP

    import datetime

    # a bounded wait: one fresh-clone suite run (of several) hung here once in session 7,
    # not reproduced; a stuck collective now fails the test after 2 minutes
    dist.init_process_group("gloo", init_method=f"file://{tmp_path}/pg", rank=0, world_size=1,
                            timeout=datetime.timedelta(minutes=2))
    try:
        torch.manual_seed(6)
        plain = nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 3))
        ddp = DDP(copy.deepcopy(plain))
        opt_a = build_optimizer("scaled_adam", plain)
        opt_b = build_optimizer("scaled_adam", ddp)
        assert opt_b.param_groups[0]["param_names"][0].startswith("module.")
        for model, opt in ((plain, opt_a), (ddp, opt_b)):
            gen = torch.Generator().manual_seed(7)
            for _ in range(3):
                x = torch.randn(8, 5, generator=gen)
                (model(x) ** 2).mean().backward()
                opt.step()
                opt.zero_grad()
        for a, b in zip(plain.parameters(), ddp.module.parameters()):
            torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)
    finally:
        dist.destroy_process_group()


def test_state_memory_is_adams_plus_per_tensor_scalars():
    model = _make()
    sa, adam = build_optimizer("scaled_adam", model), build_optimizer("adam", model)
    model(torch.randn(2, 5)).sum().backward()
    sa.step()
    adam.step()
    n_tensors = sum(1 for p in model.parameters() if p.numel() > 1)
    # ScaledAdam keeps Adam's m and v plus n and w (one float each) per non-scalar tensor
    extra = optimizer_state_bytes(sa) - optimizer_state_bytes(adam)
    assert extra == 2 * 4 * n_tensors


def test_closure_and_empty_parameters():
    gen = torch.Generator().manual_seed(9)
    w = nn.Parameter(torch.randn(4, 3, generator=gen))
    empty = nn.Parameter(torch.zeros(0, 3))
    opt = ScaledAdam([w, empty], lr=0.01)
    x = torch.randn(8, 4, generator=gen)

    def closure():
        opt.zero_grad()
        loss = (x @ w).pow(2).mean() + empty.sum()
        loss.backward()
        return loss

    losses = [opt.step(closure).item() for _ in range(15)]
    assert losses[-1] < losses[0]
    assert opt.clipping.last_scale == 1.0 and math.isfinite(opt.clipping.last_norm)


def test_bad_hyperparameters_are_named():
    p = [nn.Parameter(torch.ones(2, 2))]
    with pytest.raises(ValueError, match="betas"):
        ScaledAdam(p, betas=(0.9, 1.0))
    with pytest.raises(ValueError, match="clipping_scale"):
        ScaledAdam(p, clipping_scale=0)
    with pytest.raises(ValueError, match="lr"):
        ScaledAdam(p, lr=-1.0)
    q = nn.Parameter(torch.ones(3))
    q.grad = torch.ones(3).to_sparse()
    with pytest.raises(RuntimeError, match="sparse"):
        ScaledAdam([q]).step()


def test_fast_paths_match_the_reference_step():
    """The CPU fast path (dot products, flat per-tensor scalars) against the reference
    loop, alternating between the two on one optimizer (as the speed benchmark does)."""
    from variants import fast_paths

    runs = []
    for schedule in ([True] * 12, [False] * 12, [True, False] * 6):
        model = _make()
        opt = build_optimizer("scaled_adam", model)
        sched = build_scheduler("eden", opt)
        gen = torch.Generator().manual_seed(0)
        for i, reference in enumerate(schedule):
            with fast_paths.reference_paths(reference):
                _train(model, opt, 1, gen, sched, start=i)
        runs.append((model, opt))
    (ref_model, ref_opt), *others = runs
    for model, opt in others:
        for a, b in zip(model.parameters(), ref_model.parameters()):
            assert torch.allclose(a, b, rtol=1e-5, atol=1e-7)
        sd, ref_sd = opt.state_dict(), ref_opt.state_dict()
        assert sd["state"].keys() == ref_sd["state"].keys()
        for k, st in ref_sd["state"].items():
            assert st.keys() == sd["state"][k].keys()
            for name, value in st.items():
                other = sd["state"][k][name]
                assert other.shape == value.shape and other.dtype == value.dtype, (k, name)
                assert torch.allclose(other, value, rtol=1e-5, atol=1e-9), (k, name)
