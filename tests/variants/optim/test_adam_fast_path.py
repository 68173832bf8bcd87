"""build_optimizer('adam'): torch's fused Adam kernel on the CPU, against its loop."""
from __future__ import annotations

import io

import torch
from torch import nn

from variants import fast_paths
from variants.optim import build_optimizer, build_scheduler


def _run(schedule: list[bool]) -> tuple[nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 9), nn.Tanh(), nn.Linear(9, 2))
    opt = build_optimizer("adam", model, lr=0.75)
    sched = build_scheduler("noam", opt, warmup=5)
    gen = torch.Generator().manual_seed(1)
    for i, reference in enumerate(schedule):
        x = torch.randn(8, 6, generator=gen)
        model(x).square().mean().backward()
        with fast_paths.reference_paths(reference):
            opt.step()
        opt.zero_grad()
        sched.step_batch(i + 1)
    return model, opt


def test_fused_cpu_step_matches_the_loop_and_keeps_torchs_state():
    ref_model, ref_opt = _run([True] * 10)
    for schedule in ([False] * 10, [True, False] * 5):
        model, opt = _run(schedule)
        for a, b in zip(model.parameters(), ref_model.parameters()):
            assert torch.allclose(a, b, rtol=1e-5, atol=1e-7)
        sd, ref_sd = opt.state_dict(), ref_opt.state_dict()
        assert [sorted(g) for g in sd["param_groups"]] == [sorted(g) for g in ref_sd["param_groups"]]
        for k, st in ref_sd["state"].items():
            assert st.keys() == sd["state"][k].keys()
            for name, value in st.items():
                assert torch.allclose(sd["state"][k][name], value, rtol=1e-5, atol=1e-9)
    assert isinstance(opt, torch.optim.Adam)


def test_checkpoint_round_trip_resumes_exactly():
    model, opt = _run([False] * 4)
    buf = io.BytesIO()
    torch.save({"model": model.state_dict(), "opt": opt.state_dict()}, buf)
    buf.seek(0)
    ckpt = torch.load(buf, weights_only=False)
    model2 = nn.Sequential(nn.Linear(6, 9), nn.Tanh(), nn.Linear(9, 2))
    model2.load_state_dict(ckpt["model"])
    opt2 = build_optimizer("adam", model2, lr=0.75)
    opt2.load_state_dict(ckpt["opt"])
    x = torch.randn(8, 6)
    for m, o in ((model, opt), (model2, opt2)):
        m(x).square().mean().backward()
        o.step()
    for a, b in zip(model.parameters(), model2.parameters()):
        assert torch.equal(a, b)


def test_callers_choice_is_kept():
    model = nn.Linear(3, 2)
    opt = build_optimizer("adam", model, foreach=False)
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
    assert all(g["fused"] is None and g["foreach"] is False for g in opt.param_groups)
