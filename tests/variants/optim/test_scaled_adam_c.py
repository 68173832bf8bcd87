"""ScaledAdam's C step (``csrc/scaled_adam.c``, one thread, float32 CPU) against the torch
fused CPU step (the same optimizer under ``cpu_kernels.disabled()``) on the same parameters
and gradients: parameters, state and clipping agree within float32 roundings, over
scalars, vectors, matrices and 4-d tensors, several groups, the RMS limits, clipped and
non-finite steps; checkpoints move between the two paths."""
from __future__ import annotations

import copy
import io
import logging
import math

import pytest
import torch
from torch import nn

from variants.components import cpu_kernels
from variants.optim import ScaledAdam
from variants.optim.scaled_adam import _CTable

pytestmark = pytest.mark.skipif(cpu_kernels.library() is None,
                                reason="no C compiler: the C step cannot run")

SHAPES = [(), (1,), (7,), (33,), (5, 6), (16, 16), (3, 4, 2, 5), (1000,), (37, 29)]


def _params(seed: int) -> list[nn.Parameter]:
    """Scalars (0-d and 1-element), vectors, matrices and a 4-d tensor (sizes that are and
    are not multiples of the C loops' 16 lanes); one below param_min_rms, one far above
    param_max_rms."""
    gen = torch.Generator().manual_seed(seed)
    out = [nn.Parameter(torch.randn(s, generator=gen) * 0.5) for s in SHAPES]
    out.append(nn.Parameter(torch.full((3, 3), 1e-7)))         # RMS below 1e-5
    out.append(nn.Parameter(torch.full((4, 4), 3.5)))          # RMS above 3.0
    return out


def _optimizer(params: list[nn.Parameter]) -> ScaledAdam:
    # the second group with its own lr, eta and a scale-change limit that binds; lr 0
    # in a third
    return ScaledAdam([{"params": params[:7]},
                       {"params": params[7:10], "lr": 0.02, "eta": 0.2, "max_scale_step": 5e-4},
                       {"params": params[10:], "lr": 0.0}], lr=0.05, clipping_update_period=8)


def _grads(params, gen: torch.Generator, step: int, big_step: int = 14) -> list[torch.Tensor]:
    out = []
    for i, p in enumerate(params):
        g = torch.randn(p.shape, generator=gen) * (0.1 + 0.2 * (i % 3))
        if step == big_step and i == 4:
            g = g * 1e4                         # clipped: this tensor dominates the norm
        out.append(g)
    return out


def _run(params, opt, steps, c_path: bool, seed: int, big_step: int = 14) -> None:
    gen = torch.Generator().manual_seed(seed)
    for step in steps:
        for p, g in zip(params, _grads(params, gen, step, big_step)):
            p.grad = g
        with cpu_kernels.disabled(not c_path):
            opt.step()
        opt.zero_grad(set_to_none=True)


def _close(a: torch.Tensor, b: torch.Tensor, rtol: float = 2e-6) -> bool:
    """Equal within float32 rounding relative to the tensor's largest element."""
    return bool((a - b).abs().max() <= rtol * b.abs().max() + 1e-12)


def _assert_states_close(opt_a: ScaledAdam, opt_b: ScaledAdam, rtol: float = 2e-6) -> None:
    sd_a, sd_b = opt_a.state_dict(), opt_b.state_dict()
    assert sd_a["state"].keys() == sd_b["state"].keys()
    for k, st in sd_a["state"].items():
        other = sd_b["state"][k]
        assert st.keys() == other.keys()
        for name, value in st.items():
            assert value.dtype == other[name].dtype and value.shape == other[name].shape
            if name == "scale_exp_avg":
                # a moment of sum(g * theta), a sum with cancellation: its rounding is
                # relative to its typical size sqrt(w), not to itself
                tol = rtol * float(st["scale_exp_avg_sq"].sqrt()) + 1e-12
                assert float((value - other[name]).abs()) <= tol, (k, name)
            else:
                assert _close(value, other[name], rtol), (k, name)
    ca, cb = sd_a["clipping"], sd_b["clipping"]
    assert ca["step"] == cb["step"] and ca["num_clipped_total"] == cb["num_clipped_total"]
    assert torch.allclose(ca["norms"], cb["norms"], rtol=1e-6)


def _c_buckets(opt: ScaledAdam) -> list[bool]:
    return [b.c_step for _, b, _ in opt.__dict__["_plan"].buckets]


def test_c_step_matches_torch_fused_step(one_thread, caplog):
    """20 steps (clipped at step 14 with a 10^4 gradient): same parameters, state,
    clipping decisions and report; the clipped gradients are scaled in place alike."""
    runs = []
    for c_path in (True, False):
        params = _params(0)
        opt = _optimizer(params)
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="variants.optim.scaled_adam"):
            _run(params, opt, range(14), c_path, seed=1)
            for p, g in zip(params, _grads(params, torch.Generator().manual_seed(5), 14)):
                p.grad = g
            with cpu_kernels.disabled(not c_path):
                opt.step()
            # the gradients as the clipped step left them (scaled by its factor)
            grads = [p.grad.clone() for p in params]
            opt.zero_grad(set_to_none=True)
            _run(params, opt, range(15, 20), c_path, seed=2)
        runs.append((params, opt, grads, [r.getMessage() for r in caplog.records]))
    (pc, oc, gc, logc), (pt, ot, gt, logt) = runs
    # the C step ran for every bucket (scalars and non-scalars of the three groups)
    assert _c_buckets(oc) == [True] * 4
    assert not any(_c_buckets(ot))
    for a, b in zip(pc, pt):
        assert _close(a.detach(), b.detach()), a.shape
    for a, b in zip(gc, gt):
        assert _close(a, b), a.shape
    _assert_states_close(oc, ot)
    assert oc.last_clip is not None and ot.last_clip is not None
    assert oc.last_clip.step == ot.last_clip.step == 14
    assert oc.last_clip.scale == pytest.approx(ot.last_clip.scale, rel=1e-6)
    assert oc.last_clip.scale < 0.01
    assert oc.last_clip.dominant_param == ot.last_clip.dominant_param == "group0.param4"
    assert oc.last_clip.dominant_share == pytest.approx(ot.last_clip.dominant_share, rel=1e-6)
    assert len(logc) == len(logt) >= 1
    # lr 0: only the RMS limit moved the big tensor (to param_max_rms)
    assert float(pc[10].detach().pow(2).mean().sqrt()) == pytest.approx(3.0, rel=1e-6)
    assert float(oc.state[pc[10]]["step"]) == 20.0


def test_non_finite_gradient_zeroes_all_gradients_on_both_paths(one_thread):
    """A non-finite norm gives the clipping factor 0: every gradient is zeroed (the C step
    writes the zeros) and momentum alone moves the parameters."""
    results = []
    for c_path in (True, False):
        params = _params(3)
        opt = _optimizer(params)
        _run(params, opt, range(5), c_path, seed=4)
        for i, p in enumerate(params):
            p.grad = torch.ones(p.shape)
        params[5].grad[0, 0] = float("inf")
        with cpu_kernels.disabled(not c_path):
            opt.step()
        assert opt.clipping.last_scale == 0.0
        assert all(torch.equal(p.grad, torch.zeros(p.shape)) for p in params)
        assert all(torch.isfinite(p).all() for p in params)
        results.append((params, opt))
    (pc, oc), (pt, ot) = results
    assert _c_buckets(oc) == [True] * 4
    for a, b in zip(pc, pt):
        assert _close(a.detach(), b.detach()), a.shape
    _assert_states_close(oc, ot)


@pytest.mark.parametrize("first,second", [(True, False), (False, True), (True, True)])
def test_checkpoints_move_between_c_and_torch_paths(one_thread, first, second):
    """A state_dict saved after steps on one path, loaded into a fresh optimizer, continues
    on the other path as the uninterrupted run does (within float32 roundings; C -> C:
    bit for bit)."""
    params = _params(6)
    opt = _optimizer(params)
    _run(params, opt, range(12), first, seed=7)
    buf = io.BytesIO()
    torch.save({"params": [p.detach().clone() for p in params], "opt": opt.state_dict()}, buf)
    buf.seek(0)
    ckpt = torch.load(buf, weights_only=False)
    resumed = [nn.Parameter(t) for t in ckpt["params"]]
    opt2 = _optimizer(resumed)
    opt2.load_state_dict(ckpt["opt"])
    _run(params, opt, range(12, 20), first, seed=8, big_step=15)
    _run(resumed, opt2, range(12, 20), second, seed=8, big_step=15)
    assert any(_c_buckets(opt2)) == second
    exact = first == second
    for a, b in zip(params, resumed):
        assert torch.equal(a, b) if exact else _close(a.detach(), b.detach()), a.shape
    _assert_states_close(opt, opt2, rtol=0 if exact else 2e-6)
    assert opt2.clipping.num_clipped_total == opt.clipping.num_clipped_total >= 1


def test_tables_follow_replaced_storage_and_layouts_fall_back(one_thread):
    """A parameter whose storage is replaced (``p.data = ...``) gets a new table; a
    bucket with a non-contiguous parameter keeps the torch fused path; with two threads
    the torch path runs; all as the torch fused path computes."""
    results = []
    for c_path in (True, False):
        torch.manual_seed(11)
        mats = [nn.Parameter(torch.randn(6, 5)), nn.Parameter(torch.randn(9))]
        odd = nn.Parameter(torch.randn(5, 4).t())                # non-contiguous
        opt = ScaledAdam([{"params": mats}, {"params": [odd], "lr": 0.03}], lr=0.05)
        gen = torch.Generator().manual_seed(12)
        with cpu_kernels.disabled(not c_path):
            for step in range(8):
                if step == 4:
                    mats[0].data = mats[0].data.clone()          # new storage
                if step == 6:
                    torch.set_num_threads(2)
                for p in (*mats, odd):
                    p.grad = torch.randn(p.shape, generator=gen)
                opt.step()
                torch.set_num_threads(1)
                buckets = opt.__dict__["_plan"].buckets
                if c_path and step != 6:
                    assert [b.c_step for _, b, _ in buckets] == [True, False]
                    assert buckets[1][1].c_table is False
                    assert isinstance(buckets[0][1].c_table, _CTable)
                    assert buckets[0][1].c_table.param_ptrs[0] == mats[0].data_ptr()
                else:
                    assert not any(b.c_step for _, b, _ in buckets)
        results.append([p.detach().clone() for p in (*mats, odd)])
    for a, b in zip(*results):
        assert _close(a, b), a.shape


def test_c_stats_are_the_norms_and_dots(one_thread):
    """The statistics call: per tensor the RMS, the clipping term (|g| RMS)^2 (scalars:
    (|g| eta)^2) and sum(g * theta), and their sum: float32 products and 16-term partial
    sums (as torch.dot), accumulated in float64: within 1e-6 of the sum of |terms|."""
    gen = torch.Generator().manual_seed(13)
    shapes = [(17,), (8, 40), (3, 3, 3), (1000,)]       # tails of 16-lane chunks and blocks
    params = [nn.Parameter(torch.randn(s, generator=gen)) for s in shapes]
    for p in params:
        p.grad = torch.randn(p.shape, generator=gen)
    opt = ScaledAdam(params, lr=0.01, clipping_scale=None)
    opt.step()                                       # builds the plan and its tables
    for p in params:
        p.grad = torch.randn(p.shape, generator=gen)
    group, b, scalar = opt.__dict__["_plan"].buckets[0]
    b.grads = [p.grad for p in b.params]
    table = opt._c_table(group, b, scalar)
    assert table is not None
    cpu_kernels.call("scaled_adam_stats", table.tab, table.grads, table.count, 0, 0.1,
                     table.stats)
    total = 0.0
    for i, p in enumerate(params):
        x, g = p.detach().double(), p.grad.double()
        rms = float(x.pow(2).mean().sqrt())
        assert table.rms[i].item() == pytest.approx(rms, rel=1e-6)
        term = float(g.pow(2).sum()) * rms ** 2
        assert table.norm_sq[i].item() == pytest.approx(term, rel=2e-6)
        dot, scale = float((g * x).sum()), float((g * x).abs().sum())
        assert abs(table.stats[3 * i + 2] - dot) <= 1e-6 * scale
        total += table.norm_sq[i].item()
    assert table.stats[3 * len(params)] == pytest.approx(total, rel=1e-12)
    assert math.isfinite(total)


def test_missing_gradients_keep_the_plan_and_skip_those_tensors(one_thread):
    """Steps where some tensors (a scalar among them) have no gradient: the C step keeps
    its plan and leaves those tensors and their state as they are, as the torch fused
    step (which rebuilds its buckets) does; with two threads the plan is rebuilt."""
    missing = {3: (2, 5), 4: (2,), 7: (0, 9), 9: (2, 5)}    # step -> tensors without grad
    runs = []
    for c_path in (True, False):
        params = _params(14)
        opt = _optimizer(params)
        gen = torch.Generator().manual_seed(15)
        plans = []
        for step in range(12):
            for i, (p, g) in enumerate(zip(params, _grads(params, gen, step, big_step=8))):
                p.grad = None if i in missing.get(step, ()) else g
            if step == 9:
                torch.set_num_threads(2)
            with cpu_kernels.disabled(not c_path):
                opt.step()
            torch.set_num_threads(1)
            opt.zero_grad(set_to_none=True)
            plans.append(opt.__dict__["_plan"])
        runs.append((params, opt, plans))
    (pc, oc, plans_c), (pt, ot, plans_t) = runs
    # C: one plan but for the two-thread step (rebuilt for the tensors with gradients)
    # and the step after it (all gradients again); torch: rebuilt at every change
    assert len({id(p) for p in plans_c[:9]}) == 1
    assert plans_c[9] is not plans_c[8] and plans_c[10] is not plans_c[9]
    assert plans_c[11] is plans_c[10]
    assert len({id(p) for p in plans_t}) > 3
    for a, b in zip(pc, pt):
        assert _close(a.detach(), b.detach()), a.shape
    _assert_states_close(oc, ot)
    assert float(oc.state[pc[2]]["step"]) == 12 - 3 and float(oc.state[pc[0]]["step"]) == 11
    assert oc.last_clip is not None and oc.last_clip.step == 8
