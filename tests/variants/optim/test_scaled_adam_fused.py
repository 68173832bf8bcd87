"""ScaledAdam's fused CPU step (``torch._fused_adamw_`` per tensor, cached buckets)
against the reference step (``fast_paths.reference_paths()``) on the same parameters
and gradients: the parameters, the state and the clipping decisions agree within
float rounding, and checkpoints move between the two paths."""
from __future__ import annotations

import copy
import io
import logging

import pytest
import torch
from torch import nn

from variants import build_model, fast_paths
from variants.optim import ScaledAdam, build_optimizer, build_scheduler

torch.set_num_threads(1)


def _grads(model: nn.Module, gen: torch.Generator, step: int) -> list[torch.Tensor | None]:
    """Seeded gradients for every parameter; at step 22 one tensor's is 1000x (clipped);
    at steps 5-6 two tensors and a scalar have none (an unused module), so their step
    counts differ from the others' from then on."""
    out: list[torch.Tensor | None] = []
    for i, (name, p) in enumerate(model.named_parameters()):
        g = torch.randn(p.shape, generator=gen, dtype=p.dtype) * (0.01 + 0.1 * (i % 7))
        if step == 22 and i == 3:
            g = g * 1000.0
        skip = i in (1, 4) or name == "encoder.encoders.0.layers.0.norm.log_scale"
        out.append(None if step in (5, 6) and skip else g)
    return out


def _run(model: nn.Module, opt, sched, steps: range, reference: bool, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    for step in steps:
        for p, g in zip(model.parameters(), _grads(model, gen, step)):
            p.grad = None if g is None else g.clone()
        with fast_paths.reference_paths(reference):
            opt.step()
        opt.zero_grad(set_to_none=True)
        sched.step_batch(step + 1)


def _setup(model: nn.Module):
    opt = build_optimizer("scaled_adam", model, lr=0.05)
    return opt, build_scheduler("eden", opt, warmup_batches=5)


def _close(a: torch.Tensor, b: torch.Tensor, rtol: float = 1e-5) -> bool:
    """Equal within float rounding, relative to the tensor's largest element (elements
    near zero differ in their last bits relative to the largest ones, not to themselves)."""
    return bool((a - b).abs().max() <= rtol * b.abs().max() + 1e-12)


def _assert_close_states(opt_a, opt_b, rtol=1e-5):
    sd_a, sd_b = opt_a.state_dict(), opt_b.state_dict()
    assert sd_a["state"].keys() == sd_b["state"].keys()
    for k, st in sd_a["state"].items():
        assert st.keys() == sd_b["state"][k].keys()
        for name, value in st.items():
            other = sd_b["state"][k][name]
            assert other.shape == value.shape and other.dtype == value.dtype, (k, name)
            if name == "scale_exp_avg":
                # n, a moment of sum(g * theta): a sum with cancellation, whose rounding
                # (summation order) is relative to its typical size sqrt(w), not to n
                scale = st["scale_exp_avg_sq"].sqrt()
                assert (other - value).abs() <= rtol * scale + 1e-12, (k, name)
            else:
                assert _close(other, value, rtol), (k, name)
    ca, cb = sd_a["clipping"], sd_b["clipping"]
    assert ca["step"] == cb["step"] and ca["num_clipped_total"] == cb["num_clipped_total"]
    assert torch.allclose(ca["norms"], cb["norms"], rtol=1e-5)


@pytest.fixture(scope="module")
def tiny() -> nn.Module:
    torch.manual_seed(0)
    return build_model("zipformer-tiny", objective="ctc")


def test_fused_step_matches_reference_on_zipformer_tiny(tiny, caplog):
    """30 steps on zipformer-tiny's ~200 real parameter tensors (scalars included),
    with missing gradients and a clipped outlier: same parameters, state and clipping
    report (the warning names the dominating tensor) as the reference step."""
    models, opts, logs = [], [], []
    for reference in (True, False):
        model = copy.deepcopy(tiny)
        opt, sched = _setup(model)
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="variants.optim.scaled_adam"):
            _run(model, opt, sched, range(30), reference, seed=1)
        logs.append([r.getMessage() for r in caplog.records])
        models.append(model)
        opts.append(opt)
    (ref_model, fused_model), (ref_opt, fused_opt) = models, opts
    # the fused path ran: its cached buckets hold fused (non-scalar, float32 CPU) tensors
    assert any(b.fused for _, b, _ in fused_opt.__dict__["_plan"].buckets)
    assert "_plan" not in ref_opt.__dict__
    for (name, a), b in zip(ref_model.named_parameters(), fused_model.parameters()):
        assert _close(a.detach(), b.detach()), name
    _assert_close_states(ref_opt, fused_opt)
    ev_ref, ev_fused = ref_opt.last_clip, fused_opt.last_clip
    assert ev_ref is not None and ev_fused is not None and ev_ref.step == ev_fused.step == 22
    name3 = list(tiny.named_parameters())[3][0]
    assert ev_ref.dominant_param == ev_fused.dominant_param == name3
    assert ev_fused.scale == pytest.approx(ev_ref.scale, rel=1e-5) and ev_fused.scale < 0.5
    assert len(logs[0]) == len(logs[1]) >= 1
    assert all(name3 in m and "threshold" in m for m in logs[1])
    named = dict(fused_model.named_parameters())
    assert float(fused_opt.state[named[name3]]["step"]) == 30.0
    assert float(fused_opt.state[named["encoder.encoders.0.layers.0.norm.log_scale"]]["step"]) == 28.0


def test_clipped_gradients_are_scaled_in_place_as_on_the_reference_path():
    grads = {}
    for reference in (True, False):
        torch.manual_seed(3)
        model = nn.Sequential(nn.Linear(6, 6), nn.Linear(6, 4))
        opt = build_optimizer("scaled_adam", model, lr=0.01)
        gen = torch.Generator().manual_seed(3)
        with fast_paths.reference_paths(reference):
            for step in range(31):
                for p in model.parameters():
                    p.grad = torch.randn(p.shape, generator=gen) * (1000.0 if step == 30 else 1.0)
                opt.step()
        assert opt.last_clip is not None and opt.last_clip.step == 30
        grads[reference] = [p.grad.clone() for p in model.parameters()]
    for a, b in zip(grads[True], grads[False]):
        assert _close(a, b, 1e-6)


def test_lr_zero_and_rms_limits_match_reference():
    """lr 0 (the scale change above param_max_rms still applies), a tensor above
    param_max_rms and one below param_min_rms, in float32 and float64."""
    for dtype in (torch.float32, torch.float64):
        results = []
        for reference in (True, False):
            big = nn.Parameter(torch.full((4, 4), 3.5, dtype=dtype))
            tiny = nn.Parameter(torch.full((3, 3), 1e-7, dtype=dtype))
            mid = nn.Parameter(torch.linspace(-1, 1, 12, dtype=dtype).reshape(3, 4))
            frozen_lr = nn.Parameter(torch.full((5,), 3.2, dtype=dtype))
            opt = ScaledAdam([{"params": [big, tiny, mid]}, {"params": [frozen_lr], "lr": 0.0}],
                             lr=0.03, clipping_scale=None)
            gen = torch.Generator().manual_seed(5)
            with fast_paths.reference_paths(reference):
                for _ in range(6):
                    for p in (big, tiny, mid, frozen_lr):
                        p.grad = torch.randn(p.shape, generator=gen, dtype=dtype)
                    opt.step()
            results.append([p.detach().clone() for p in (big, tiny, mid, frozen_lr)])
        for a, b in zip(*results):
            assert _close(a, b, 1e-6)
        # lr 0: only the RMS limit moved it, down to param_max_rms
        assert float(results[1][3].pow(2).mean().sqrt()) == pytest.approx(3.0, rel=1e-6)


def test_checkpoints_move_between_the_paths_and_resume_exactly(tiny):
    """A checkpoint written on the reference path resumes on the fused one (and back)
    within rounding of an uninterrupted reference run; fused -> checkpoint -> fused
    resumes bit for bit."""
    def fresh():
        model = copy.deepcopy(tiny)
        return (model, *_setup(model))

    def save(model, opt, sched) -> io.BytesIO:
        buf = io.BytesIO()
        torch.save({"model": model.state_dict(), "opt": opt.state_dict(),
                    "sched": sched.state_dict()}, buf)
        buf.seek(0)
        return buf

    def load(buf):
        model, opt, sched = fresh()
        ckpt = torch.load(buf, weights_only=False)
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["opt"])
        sched.load_state_dict(ckpt["sched"])
        return model, opt, sched

    for first, second in ((True, False), (False, True), (False, False)):
        model, opt, sched = fresh()
        _run(model, opt, sched, range(12), first, seed=2)
        resumed = load(save(model, opt, sched))
        _run(model, opt, sched, range(12, 20), second, seed=3)
        _run(*resumed, range(12, 20), second, seed=3)
        exact = first == second
        for a, b in zip(model.parameters(), resumed[0].parameters()):
            assert torch.equal(a, b) if exact else _close(a.detach(), b.detach())
        _assert_close_states(opt, resumed[1], rtol=0 if exact else 1e-5)
        # the resumed optimizer's cached buckets were rebuilt for its own state
        if not second:
            assert resumed[1].__dict__["_plan"].state is resumed[1].state


def test_cached_buckets_follow_new_groups_and_loaded_state():
    torch.manual_seed(7)
    a, b = nn.Parameter(torch.randn(4, 3)), nn.Parameter(torch.randn(6))
    opt = ScaledAdam([a], lr=0.02, clipping_scale=None)
    a.grad = torch.randn(4, 3)
    opt.step()
    opt.add_param_group({"params": [b]})
    a.grad, b.grad = torch.randn(4, 3), torch.randn(6)
    before = b.detach().clone()
    opt.step()
    assert not torch.equal(b, before) and float(opt.state[b]["step"]) == 1.0
    assert float(opt.state[a]["step"]) == 2.0
    # a loaded state replaces the tensors the cached buckets held: the step after loading
    # is the reference step from the loaded state
    saved = copy.deepcopy(opt.state_dict())
    a.grad, b.grad = torch.randn(4, 3), torch.randn(6)
    opt.step()
    start = [a.detach().clone(), b.detach().clone()]
    grads = [torch.randn(4, 3), torch.randn(6)]
    results = []
    for reference in (False, True):
        with torch.no_grad():
            a.copy_(start[0])
            b.copy_(start[1])
        opt.load_state_dict(copy.deepcopy(saved))
        assert float(opt.state[a]["step"]) == 2.0
        a.grad, b.grad = grads[0].clone(), grads[1].clone()
        with fast_paths.reference_paths(reference):
            opt.step()
        assert float(opt.state[a]["step"]) == 3.0 and float(opt.state[b]["step"]) == 2.0
        results.append([a.detach().clone(), b.detach().clone()])
    for x, y in zip(*results):
        assert _close(x, y, 1e-6)
    assert not torch.equal(results[0][0], start[0])


def test_deep_copy_keeps_clipping_and_steps_like_the_original():
    torch.manual_seed(8)
    model = nn.Sequential(nn.Linear(5, 7), nn.Linear(7, 3))
    opt = build_optimizer("scaled_adam", model, lr=0.02)
    gen = torch.Generator().manual_seed(8)
    for _ in range(12):                       # past step 10: a clipping threshold is set
        for p in model.parameters():
            p.grad = torch.randn(p.shape, generator=gen)
        opt.step()
    model2, opt2 = copy.deepcopy((model, opt))
    assert opt2.clipping.threshold == opt.clipping.threshold and "_plan" not in opt2.__dict__
    for _ in range(3):
        for p, q in zip(model.parameters(), model2.parameters()):
            p.grad = torch.randn(p.shape, generator=gen)
            q.grad = p.grad.clone()
        opt.step()
        opt2.step()
    for a, b in zip(model.parameters(), model2.parameters()):
        assert torch.equal(a, b)
    assert opt2.clipping.step == opt.clipping.step == 15


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("layouts", ["contiguous", "mixed"])
def test_clipped_steps_and_tensor_layouts_match_reference(dtype, layouts):
    """Clipped steps (at step 12 a 1000x gradient) in float32 and float64, with all
    tensors contiguous (the fused kernel) or some not (torch's fused CPU kernel ignores
    strides: a channels-last parameter with a contiguous gradient and a transposed one
    must take the multi-tensor update, clipped as well)."""
    results = []
    for reference in (True, False):
        torch.manual_seed(9)
        conv = torch.randn(4, 3, 2, 2, dtype=dtype)
        lin = torch.randn(5, 6, dtype=dtype)
        if layouts == "mixed":
            conv, lin = conv.to(memory_format=torch.channels_last), lin.t()
        params = [nn.Parameter(conv), nn.Parameter(lin), nn.Parameter(torch.randn(7, dtype=dtype)),
                  nn.Parameter(torch.tensor(0.5, dtype=dtype))]
        opt = ScaledAdam(params, lr=0.05)
        gen = torch.Generator().manual_seed(9)
        with fast_paths.reference_paths(reference):
            for step in range(14):
                for i, p in enumerate(params):
                    g = torch.randn(p.shape, generator=gen, dtype=dtype)      # contiguous
                    p.grad = g * 1000.0 if step == 12 and i == 0 else g
                opt.step()
        assert opt.last_clip is not None and opt.last_clip.step == 12
        results.append([p.detach().clone() for p in params] + [p.grad.clone() for p in params])
    for a, b in zip(*results):
        assert _close(a, b, 1e-6)
