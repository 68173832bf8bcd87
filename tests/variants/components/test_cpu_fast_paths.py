"""CPU fast paths (Swoosh softplus as exp, + 1, log; activation_dropout_linear; Conv-Embed) against the reference."""
from __future__ import annotations

import random

import pytest
import torch

from variants import fast_paths
from variants.components import cpu_kernels, swoosh
from variants.components.activation_dropout_linear import activation_dropout_linear
from variants.components.swoosh import SwooshL, SwooshR


def _x(n: int = swoosh.EXP_LOG_MIN_NUMEL * 2) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    # the whole range that matters: far below the kink, around it, and past softplus's
    # threshold (z > 20), where it returns z itself
    return torch.cat([torch.randn(n - 4, generator=g) * 6, torch.tensor([-90.0, 0.0, 25.0, 60.0])])


@pytest.mark.parametrize("module", [SwooshL(), SwooshR()])
def test_exp_log_form_matches_softplus_within_roundings(module):
    x = _x().requires_grad_(True)
    g = torch.randn(x.shape, generator=torch.Generator().manual_seed(1))
    out = {}
    for reference in (True, False):
        x.grad = None
        with fast_paths.reference_paths(reference):
            y = module(x)
            y.backward(g)
            with torch.no_grad():
                y_eval = module(x)
            y_fn, d_fn = module.fn_and_deriv(x.detach())
        out[reference] = (y.detach(), x.grad.clone(), y_eval, y_fn, d_fn)
    ref, fast = out[True], out[False]
    for a, b in zip(fast, ref):
        # a few roundings of the terms (|0.08 x| + the constant), never more
        tol = 8 * torch.finfo(torch.float32).eps * (0.08 * x.detach().abs() + 1.0)
        assert torch.all((a - b).abs() <= tol)
    # the byte derivative: sigmoid is computed as before, so the same levels; the level's
    # dequantized value (one fused multiply-add) within one float32 rounding (~6e-8)
    level_ref = ((ref[1] / g - swoosh.DERIV_MIN) / swoosh.LEVEL_STEP).round()
    level_fast = ((fast[1] / g - swoosh.DERIV_MIN) / swoosh.LEVEL_STEP).round()
    keep = g.abs() > 1e-3
    assert torch.equal(level_fast[keep], level_ref[keep])
    assert torch.all((fast[1] - ref[1]).abs() <= 1.2e-7 * g.abs())


def test_exp_log_form_on_large_tensors_only_and_exact_at_the_extremes():
    assert swoosh._exp_log(torch.ones(swoosh.EXP_LOG_MIN_NUMEL))
    assert not swoosh._exp_log(torch.ones(swoosh.EXP_LOG_MIN_NUMEL - 1))
    with fast_paths.reference_paths():
        assert not swoosh._exp_log(torch.ones(swoosh.EXP_LOG_MIN_NUMEL))
    # past the threshold, where exp would overflow, at infinities and NaN: softplus's values
    z = torch.tensor([20.5, 88.0, 100.0, 1e30, float("inf"), -float("inf"), float("nan"), -200.0])
    z = z.repeat(swoosh.EXP_LOG_MIN_NUMEL)
    want = torch.nn.functional.softplus(z)
    torch.testing.assert_close(swoosh._softplus(z), want, rtol=0, atol=0, equal_nan=True)
    zz = z.clone()                                   # in place, as the no-gradient path does
    swoosh._exp_log_softplus(zz, out=zz)
    torch.testing.assert_close(zz, want, rtol=0, atol=0, equal_nan=True)


def test_activation_dropout_linear_with_the_fast_path():
    torch.manual_seed(0)
    lin = torch.nn.Linear(256, 32)
    x = (torch.randn(4, 40, 256) * 3).requires_grad_(True)
    res = {}
    for reference in (True, False):
        x.grad = None
        lin.zero_grad()
        with fast_paths.reference_paths(reference):
            y = activation_dropout_linear(x, SwooshL(), lin)
            y.square().sum().backward()
        res[reference] = (y.detach(), x.grad.clone(), lin.weight.grad.clone())
    for a, b in zip(res[False], res[True]):
        assert float((a - b).abs().max() / b.abs().max()) < 1e-5


def test_conv_embed_channels_last_first_convolution_matches_reference():
    from variants.components.conv_embed import ConvEmbed

    x = torch.randn(2, 60, 80)
    lens = torch.tensor([60, 51])
    res = {}
    for reference in (True, False):
        torch.manual_seed(0)         # a fresh module each time: the Whitener keeps state
        m = ConvEmbed(80, 32, channels=(4, 8, 16)).train()
        torch.manual_seed(1)
        random.seed(1)               # the Balancer's and Whitener's draws
        with fast_paths.reference_paths(reference):
            y, _ = m(x, lens)
            y.square().sum().backward()
        res[reference] = [y.detach(), m.conv[0].weight.grad.clone(), m.conv[0].bias.grad.clone()]
    for a, b in zip(res[False], res[True]):
        assert float((a - b).abs().max() / b.abs().max()) < 1e-4


def test_conv2d_subsampling_channels_last_matches_reference():
    from variants.components.conv2d_subsampling import Conv2dSubsampling

    torch.manual_seed(0)
    m = Conv2dSubsampling(80, 16)
    x = torch.randn(2, 40, 80)
    lens = torch.tensor([40, 31])
    res = {}
    for reference in (True, False):
        m.zero_grad()
        with fast_paths.reference_paths(reference):
            y, y_lens = m(x, lens)
            y.square().sum().backward()
        res[reference] = [y.detach()] + [p.grad.clone() for p in m.parameters()]
    for a, b in zip(res[False], res[True]):
        assert float((a - b).abs().max() / b.abs().max()) < 1e-5


def test_conv2d_subsampling_fused_relu_is_bit_for_bit(monkeypatch):
    """ReLU fused into mkldnn's convolution (forward) and autograd's own two backward ops:
    the same output and gradients as Conv2d -> ReLU in the same layout, bit for bit."""
    from variants.components import conv2d_subsampling as cs

    torch.manual_seed(0)
    m = cs.Conv2dSubsampling(80, 16)
    x = torch.randn(3, 45, 80)
    lens = torch.tensor([45, 31, 20])
    fused = cs._fused_relu_applies
    calls = []
    monkeypatch.setattr(cs._ConvReLUCPU, "apply", lambda *a, f=cs._ConvReLUCPU.apply: calls.append(1) or f(*a))
    res = []
    for applies in (fused, lambda y: False):
        monkeypatch.setattr(cs, "_fused_relu_applies", applies)
        m.zero_grad()
        y, _ = m(x, lens)
        (y * torch.linspace(-1.0, 1.0, 16)).sum().backward()
        res.append([y.detach()] + [p.grad.clone() for p in m.parameters()])
    assert len(calls) == 2                       # both convolutions, the first pass only
    assert all(torch.equal(a, b) for a, b in zip(*res))


@pytest.mark.parametrize("channels_last", [False, True])
def test_zero_padded_frames_is_bit_for_bit(channels_last):
    from variants.components.conv_embed import zero_padded_frames

    x = torch.randn(3, 4, 11, 5)
    x[1, 2, 9, 3] = float("nan")                     # in a padded frame: zeroed too
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    lens = torch.tensor([11, 8, 5])
    g = torch.randn(3, 4, 11, 5)
    out = {}
    for reference in (True, False):
        xi = x.detach().requires_grad_(True)
        with fast_paths.reference_paths(reference):
            y = zero_padded_frames(xi, lens, time_dim=2)
        y.backward(g)
        out[reference] = (y.detach(), xi.grad, y.is_contiguous(memory_format=torch.channels_last))
    assert torch.equal(out[True][0], out[False][0]) and torch.equal(out[True][1], out[False][1])
    assert out[False][2] == out[True][2]


def test_softplus_unclamped_matches_softplus_and_takes_the_clamped_form_past_the_limit():
    n = swoosh.EXP_LOG_MIN_NUMEL
    z = torch.randn(n, generator=torch.Generator().manual_seed(3)) * 8
    want = torch.nn.functional.softplus(z)
    got = swoosh.softplus_unclamped(z)
    assert torch.all((got - want).abs() <= 4 * torch.finfo(torch.float32).eps * (want.abs() + 1.0))
    # past EXP_NO_CLAMP_MAX (exp would overflow), infinities and NaN: softplus's values
    for extreme in (85.0, 1e30, float("inf"), float("nan")):
        ze = z.clone()
        ze[7] = extreme
        torch.testing.assert_close(swoosh.softplus_unclamped(ze)[7:8],
                                   torch.nn.functional.softplus(ze[7:8]), rtol=0, atol=0,
                                   equal_nan=True)


@pytest.mark.parametrize("kernel", [(7, 7), (3, 5), (5, 3)])
@pytest.mark.parametrize("frames", [2, 4, 23])
def test_depthwise_weight_grad_matches_mkldnn(kernel, frames):
    from variants.components.convnext import channels_first, depthwise_weight_grad

    g = torch.Generator().manual_seed(frames)
    x = torch.randn(3, 5, frames, 11, generator=g).contiguous(memory_format=torch.channels_last)
    grad = torch.randn(3, 5, frames, 11, generator=g).contiguous(memory_format=torch.channels_last)
    w = torch.randn(5, 1, *kernel, dtype=torch.float64)
    pad = [(kernel[0] - 1) // 2, (kernel[1] - 1) // 2]
    want = torch.ops.aten.convolution_backward(grad.double(), x.double(), w, None, [1, 1], pad, [1, 1],
                                               False, [0, 0], 5, [False, True, False])[1]
    got = depthwise_weight_grad(channels_first(x), channels_first(grad), kernel)
    assert got.shape == want.shape and got.dtype == torch.float32
    torch.testing.assert_close(got.double(), want, rtol=0, atol=1e-5 * float(want.abs().max()))


def _convnext_run(reference: bool, scale: float, prob: float, layerdrop: float = 0.0):
    from variants.components.convnext import ConvNeXt
    from variants.components.scheduled_float import ScheduledFloat

    torch.manual_seed(0)
    m = ConvNeXt(16, layerdrop_rate=layerdrop).train()
    for p in m.parameters():                       # the 0.01 initial scale hides differences
        p.data.normal_(std=0.3)
    m.hidden_balancer.prob = ScheduledFloat((0.0, prob), default=prob)
    x = (torch.randn(3, 16, 30, 11) * scale).requires_grad_(True)
    g = torch.randn(3, 16, 30, 11)
    random.seed(0)
    torch.manual_seed(5)                             # the layer drop's draw: utterance 2 dropped
    with fast_paths.reference_paths(reference):
        y = m(x)
        y.backward(g)
    return [y.detach(), x.grad] + [p.grad for p in m.parameters()]


@pytest.mark.parametrize("scale", [1.0, 0.05])
def test_convnext_fused_cpu_path_matches_reference(scale, monkeypatch):
    """The fused CPU hidden path (ConvNeXt in training, channels-last), Balancer acting: the
    output and every gradient of the modules applied in turn, within float rounding (a small
    ``scale`` puts the hidden pre-activations below the Balancer's min_abs, so it acts)."""
    from variants.components import convnext

    calls = []
    apply = convnext._FusedHiddenCPU.apply
    monkeypatch.setattr(convnext._FusedHiddenCPU, "apply", lambda *a: calls.append(1) or apply(*a))
    fused = _convnext_run(False, scale, prob=1.0)
    assert calls                                     # the fused path ran
    ref = _convnext_run(True, scale, prob=1.0)
    for a, b in zip(fused, ref):
        assert a.shape == b.shape
        assert float((a - b).abs().max() / b.abs().max()) < 1e-5
    if scale < 1.0:
        # the Balancer's extra gradient is in there: without it the hidden weights' differ
        quiet = _convnext_run(True, scale, prob=0.0)
        assert float((quiet[4] - ref[4]).abs().max() / ref[4].abs().max()) > 1e-3


def test_convnext_fused_cpu_path_with_layer_drop_matches_reference():
    """The layer drop inside the fused path (branch times 0/1 per utterance, the residual
    added in place): output and gradients as the reference's, a dropped utterance's output
    exactly its input."""
    torch.manual_seed(5)
    keep = torch.rand(3, 1, 1, 1) > 0.5
    assert not bool(keep.all()) and bool(keep.any())  # the seed drops some, keeps some
    fused = _convnext_run(False, 1.0, prob=0.0, layerdrop=0.5)
    ref = _convnext_run(True, 1.0, prob=0.0, layerdrop=0.5)
    for a, b in zip(fused, ref):
        assert float((a - b).abs().max() / b.abs().max()) < 1e-5
    torch.manual_seed(0)
    dropped = int((~keep.view(-1)).nonzero()[0])
    assert torch.equal(fused[0][dropped], ref[0][dropped])


@pytest.mark.parametrize("spread", [3.0, 0.02])
def test_balancer_frames_by_channels_path_matches_reference(spread, one_thread):
    """Large CPU tensors take the (frames, channels) backward (sums per channel, three passes),
    channel dim 1 of a channels-last tensor and the last dim of a contiguous one; the result
    keeps the gradient's layout. Against the earlier fused path (per-channel moments too)
    within 1e-5 of the added gradient always; against the autograd reference within 1e-4
    where |mean| / std stays moderate (with channels at |mean| / std ~ 100, ``spread``
    0.02, float32 sums of x^2 cancel in the variance: both fused paths are then ~1e-3
    from the reference, as before)."""
    from variants.components import balancer as bal
    from variants.components.balancer import Balancer

    for shape, channel_dim, layout in (((4, 12, 40, 19), 1, torch.channels_last),
                                      ((3, 3000, 12), -1, torch.contiguous_format)):
        c = shape[channel_dim]
        assert torch.Size(shape).numel() >= bal.FRAMES_BY_CHANNELS_MIN_NUMEL
        view = [1] * len(shape)
        view[channel_dim] = c
        gen = torch.Generator().manual_seed(c)
        x = (torch.randn(shape, generator=gen) * torch.linspace(spread, 3.0, c).view(view)
             + torch.linspace(-2.0, 2.0, c).view(view)).contiguous(memory_format=layout)
        grad = torch.randn(shape, generator=gen).contiguous(memory_format=layout)
        m = Balancer(c, channel_dim=channel_dim, min_abs=0.5, max_abs=2.0, prob=1.0).train()
        out = {}
        for mode in ("reference", "fused", "frames_by_channels", "c_loop"):
            xi = x.detach().requires_grad_(True)
            random.seed(0)
            limit = bal.FRAMES_BY_CHANNELS_MIN_NUMEL
            bal.FRAMES_BY_CHANNELS_MIN_NUMEL = 1 << 62 if mode == "fused" else limit
            try:
                with fast_paths.reference_paths(mode == "reference"), \
                        cpu_kernels.disabled(mode != "c_loop"):
                    m(xi).backward(grad)
            finally:
                bal.FRAMES_BY_CHANNELS_MIN_NUMEL = limit
            out[mode] = xi.grad
        ref, new = out["reference"], out["frames_by_channels"]
        assert not torch.equal(ref, grad)                      # the constraints acted
        added = (ref - grad).abs().max()
        assert float((new - out["fused"]).abs().max() / added) < 1e-5
        if spread > 1.0:
            assert float((new - ref).abs().max() / added) < 1e-4
        assert new.stride() == grad.stride()
        # the C loop (csrc/balancer.c) sums in float64: within 1e-4 of the reference
        # also where the float32 sums cancel
        if cpu_kernels.library() is not None:
            assert float((out["c_loop"] - ref).abs().max() / added) < 1e-4
            assert out["c_loop"].stride() == grad.stride()


def test_conv_embed_fast_cpu_paths_match_reference_in_every_gradient():
    """Conv-Embed in training with every CPU path (fused ConvNeXt, the out Linear on
    channels-last, the Swoosh levels, the Balancer's backward): output and all gradients
    within float rounding of the reference, on a padded batch. (Measured on such a batch:
    the CPU paths before this change were already ~3e-4 from the reference on the
    depth-wise weights' gradient, as these are; the fused ConvNeXt alone is within 1e-5,
    test above.)"""
    from variants.components.conv_embed import ConvEmbed

    x = torch.randn(3, 90, 80)
    lens = torch.tensor([90, 71, 40])
    res = {}
    for reference in (True, False):
        torch.manual_seed(0)         # a fresh module each time: the Whitener keeps state
        m = ConvEmbed(80, 32, channels=(4, 8, 16)).train()
        for p in m.convnext.parameters():           # small initial scales hide differences
            p.data.add_(0.2 * torch.randn_like(p))
        torch.manual_seed(1)
        random.seed(1)               # the Balancer's, Whitener's and layer drop's draws
        with fast_paths.reference_paths(reference):
            y, y_lens = m(x, lens)
            (y * torch.randn(y.shape, generator=torch.Generator().manual_seed(2))).sum().backward()
        res[reference] = [y.detach()] + [p.grad.clone() for p in m.parameters()]
    assert len(res[True]) == len(res[False])
    assert float((res[False][0] - res[True][0]).abs().max() / res[True][0].abs().max()) < 1e-5
    for a, b in zip(res[False], res[True]):
        assert a.shape == b.shape
        assert float((a - b).abs().max() / b.abs().max()) < 1e-3


def test_scratch_buffers_are_reused_per_name_and_grow():
    from variants.components.scratch import clear, scratch

    like = torch.zeros(1)
    a = scratch("test.a", (4, 5), like)
    b = scratch("test.a", (2, 3), like)
    assert b.data_ptr() == a.data_ptr() and b.shape == (2, 3) and b.is_contiguous()
    assert scratch("test.b", (4, 5), like).data_ptr() != a.data_ptr()
    c = scratch("test.a", (10, 10), like)                 # larger: a new buffer
    assert c.shape == (10, 10) and scratch("test.a", (3,), like).data_ptr() == c.data_ptr()
    clear()


def _conv_stack_run(mode: str, prob: float, monkeypatch, c_loops: bool = False):
    """Conv-Embed's output and gradients in training, its three Balancers acting with
    ``prob``; ``mode``: "fused" (the stages as _ConvBalancedSwooshRCPU), "layout" (the
    CPU layout path without it) or "reference" (reference_paths); the C loops of
    cpu_kernels only with ``c_loops``."""
    from variants.components import conv_embed
    from variants.components.scheduled_float import ScheduledFloat

    calls = []
    apply = conv_embed._ConvBalancedSwooshRCPU.apply
    monkeypatch.setattr(conv_embed._ConvBalancedSwooshRCPU, "apply",
                        lambda *a: calls.append(a[5] is not None) or apply(*a))
    if mode == "layout":
        monkeypatch.setattr(conv_embed, "_fused_stack_applies", lambda *a: False)
    x = 3.0 * torch.randn(3, 90, 80, generator=torch.Generator().manual_seed(3))
    lens = torch.tensor([90, 71, 40])
    torch.manual_seed(0)
    m = conv_embed.ConvEmbed(80, 32, channels=(8, 16, 64)).train()
    for i in (1, 4, 7):
        m.conv[i].prob = ScheduledFloat((0.0, prob), default=prob)
    torch.manual_seed(1)
    random.seed(1)
    with fast_paths.reference_paths(mode == "reference"), cpu_kernels.disabled(not c_loops):
        y, _ = m(x, lens)
        (y * torch.randn(y.shape, generator=torch.Generator().manual_seed(2))).sum().backward()
    monkeypatch.undo()
    return calls, [y.detach()] + [p.grad.clone() for p in m.conv.parameters()]


@pytest.mark.parametrize("prob", [0.0, 1.0])
def test_conv_embed_fused_conv_stack_matches_reference(prob, monkeypatch):
    """The three Conv2d -> Balancer -> SwooshR stages as one Function each (CPU, training):
    the output and the convolutions' gradients bit for bit the layout path's (the modules
    applied in turn), and the reference's within float32 roundings; with the Balancers
    acting (their extra gradient changes the gradients) and not."""
    calls, fused = _conv_stack_run("fused", prob, monkeypatch)
    assert calls == [prob == 1.0] * 3                         # the fused stages ran
    layout_calls, layout = _conv_stack_run("layout", prob, monkeypatch)
    assert not layout_calls
    ref_calls, ref = _conv_stack_run("reference", prob, monkeypatch)
    assert not ref_calls                                      # reachable under reference_paths()
    assert len(fused) == len(layout) == len(ref) == 7
    for a, b, r in zip(fused, layout, ref):
        assert torch.equal(a, b)
        assert float((a - r).abs().max() / r.abs().max()) < 2e-5     # measured: 4e-6
    if cpu_kernels.library() is not None:
        # with the C loops (the stages' csrc/conv_embed.c, the Balancer's extra gradient,
        # ConvNeXt's csrc/convnext.c): within float32
        # roundings, but a derivative level may move by one step (1.2 / 255) where the
        # sigmoid's rounding crosses a level boundary (the authors dither every level by up
        # to a step): measured 6e-5 and 3.4e-4 of the largest gradient (a bias's, a sum
        # over all positions); the output within 1e-5
        calls, c_loops = _conv_stack_run("fused", prob, monkeypatch, c_loops=True)
        assert calls == [prob == 1.0] * 3
        assert float((c_loops[0] - ref[0]).abs().max() / ref[0].abs().max()) < 1e-5
        for a, r in zip(c_loops[1:], ref[1:]):
            assert float((a - r).abs().max() / r.abs().max()) < 1e-3
    if prob == 1.0:
        _, quiet = _conv_stack_run("fused", 0.0, monkeypatch)
        assert max(float((q - f).abs().max() / f.abs().max()) for q, f in zip(quiet[1:], fused[1:])) > 1e-2


def test_conv_embed_fused_conv_stack_off_where_a_gpu_would_not_take_it():
    """device_independent() (the arithmetic a GPU runs), eval and no-grad runs keep the
    modules applied in turn."""
    from variants.components import conv_embed

    m = conv_embed.ConvEmbed(80, 32, channels=(4, 8, 16)).train()
    y = torch.randn(2, 1, 40, 80)
    assert conv_embed._fused_stack_applies(m, y)
    with fast_paths.device_independent():
        assert not conv_embed._fused_stack_applies(m, y)
    assert not conv_embed._fused_stack_applies(m, y.requires_grad_(True))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not conv_embed._fused_stack_applies(m, y.detach())
    calls = []
    apply = conv_embed._ConvBalancedSwooshRCPU.apply
    conv_embed._ConvBalancedSwooshRCPU.apply = lambda *a: calls.append(1) or apply(*a)
    try:
        with torch.no_grad():
            m(torch.randn(2, 40, 80), torch.tensor([40, 30]))
        m.eval()(torch.randn(2, 40, 80), torch.tensor([40, 30]))
    finally:
        conv_embed._ConvBalancedSwooshRCPU.apply = apply
    assert not calls


def convnext_module():
    from variants.components import convnext

    return convnext


def _spy_kernels(monkeypatch) -> list[str]:
    """The names of the C loops (cpu_kernels.call) run from now on."""
    names: list[str] = []
    call = cpu_kernels.call
    monkeypatch.setattr(cpu_kernels, "call", lambda name, *a: names.append(name) or call(name, *a))
    return names


@pytest.mark.parametrize("scale,prob,layerdrop", [(1.0, 0.0, 0.0), (0.05, 1.0, 0.0), (1.0, 0.0, 0.5),
                                                  (1.0, 1.0, 0.5), (1.0, 0.0, 1.0)])
def test_convnext_c_loops_match_the_torch_path(scale, prob, layerdrop, monkeypatch, one_thread):
    """ConvNeXt's fused CPU path with the C loops (csrc/convnext.c: the hidden layer's bias,
    SwooshL and derivative level, the output's bias, layer drop and residual, their
    backward passes and the depth-wise weight gradient) against the same path in torch's
    operators: output and every gradient within float32 roundings, with the hidden Balancer
    acting (``prob``) or not and the layer drop dropping an utterance, none or all (then,
    with the Balancer idle, the branch runs on the kept utterances only, or not at all)."""
    if cpu_kernels.library() is None:
        pytest.skip("no C compiler: the C loops are off")
    names = _spy_kernels(monkeypatch)
    calls = []
    apply = convnext_module()._FusedHiddenCPU.apply
    monkeypatch.setattr(convnext_module()._FusedHiddenCPU, "apply", lambda *a: calls.append(a[0].shape[0]) or apply(*a))
    c_path = _convnext_run(False, scale, prob, layerdrop)
    assert calls == [3]
    if layerdrop < 1.0:
        assert {"convnext_hidden_levels", "convnext_residual", "convnext_grad_out", "convnext_grad_levels",
                "depthwise_weight_grad_cl", "depthwise_conv7_cl"} <= set(names)
    else:
        assert not names                         # every utterance dropped: no branch to run
    names.clear()
    with cpu_kernels.disabled():
        torch_path = _convnext_run(False, scale, prob, layerdrop)
    assert not names
    for a, b in zip(c_path, torch_path):
        assert a.shape == b.shape
        assert float((a - b).abs().max()) <= 1e-5 * float(b.abs().max())     # all 0 when all dropped


@pytest.mark.parametrize("kernel", [(7, 7), (3, 5), (5, 3)])
@pytest.mark.parametrize("frames", [2, 4, 23])
def test_depthwise_weight_grad_c_loop_matches_mkldnn(kernel, frames):
    """csrc/convnext.c's depth-wise weight and bias gradients on channels-last tensors (two
    blocks of 16 channels; kernels wider and taller than the input too) against the float64
    convolution backward."""
    if cpu_kernels.library() is None:
        pytest.skip("no C compiler: the C loops are off")
    g = torch.Generator().manual_seed(frames)
    b, c, f = 3, 32, 11
    x = torch.randn(b, c, frames, f, generator=g).contiguous(memory_format=torch.channels_last)
    grad = torch.randn(b, c, frames, f, generator=g).contiguous(memory_format=torch.channels_last)
    w = torch.randn(c, 1, *kernel, dtype=torch.float64)
    pad = [(kernel[0] - 1) // 2, (kernel[1] - 1) // 2]
    _, want, want_b = torch.ops.aten.convolution_backward(
        grad.double(), x.double(), w, [c], [1, 1], pad, [1, 1], False, [0, 0], c, [False, True, True])
    got, got_b = torch.empty(w.shape), torch.empty(c)
    cpu_kernels.call("depthwise_weight_grad_cl", x, grad, got, got_b, b, frames, f, c, *kernel)
    torch.testing.assert_close(got.double(), want, rtol=0, atol=1e-6 * float(want.abs().max()))
    torch.testing.assert_close(got_b.double(), want_b, rtol=0, atol=1e-6 * float(want_b.abs().max()))


@pytest.mark.parametrize("kh", [7, 3])
@pytest.mark.parametrize("frames,bins", [(23, 11), (2, 3), (5, 1), (1, 2), (4, 7)])
def test_depthwise_conv_c_loop_matches_mkldnn(kh, frames, bins):
    """csrc/convnext.c's depth-wise convolution (kernel kh x 7, 'same' padding) on
    channels-last tensors: its output against mkldnn's, and with the kernel flipped and a
    residual added, the input's gradient plus that residual; fewer bins and frames than the
    kernel's reach too."""
    if cpu_kernels.library() is None:
        pytest.skip("no C compiler: the C loops are off")
    gen = torch.Generator().manual_seed(frames * 10 + bins)
    b, c = 2, 32
    x, grad, res = (torch.randn(b, c, frames, bins, generator=gen).contiguous(memory_format=torch.channels_last)
                    for _ in range(3))
    w, bias = torch.randn(c, 1, kh, 7, generator=gen), torch.randn(c, generator=gen)
    pad = ((kh - 1) // 2, 3)
    want = torch.nn.functional.conv2d(x.double(), w.double(), bias.double(), padding=pad, groups=c)
    got = torch.empty_like(x)
    cpu_kernels.call("depthwise_conv7_cl", x, w.reshape(c, -1).t().contiguous(), bias, x, got, b, frames,
                     bins, c, kh, 0)
    torch.testing.assert_close(got.double(), want, rtol=0, atol=1e-6 * float(want.abs().max()))
    want_x = torch.ops.aten.convolution_backward(grad.double(), x.double(), w.double(), None, [1, 1],
                                                 list(pad), [1, 1], False, [0, 0], c,
                                                 [True, False, False])[0] + res.double()
    got_x = torch.empty_like(x)
    cpu_kernels.call("depthwise_conv7_cl", grad, w.flip(2, 3).reshape(c, -1).t().contiguous(), torch.zeros(c),
                     res, got_x, b, frames, bins, c, kh, 1)
    torch.testing.assert_close(got_x.double(), want_x, rtol=0, atol=1e-6 * float(want_x.abs().max()))


def test_conv_embed_c_loops_run_and_zero_the_padded_frames_in_the_third_stage(monkeypatch, one_thread):
    """With the C loops the three fused stages run csrc/conv_embed.c forward and backward,
    the third with the output lengths (use_lens), so ConvNeXt gets 0 on the padded frames
    (and nothing else zeroed) without a masked copy before it."""
    if cpu_kernels.library() is None:
        pytest.skip("no C compiler: the C loops are off")
    from variants.components import conv_embed

    calls: list[tuple] = []
    call = cpu_kernels.call
    monkeypatch.setattr(cpu_kernels, "call", lambda name, *a: calls.append((name, a)) or call(name, *a))
    seen = []
    monkeypatch.setattr(conv_embed.ConvNeXt, "forward",
                        lambda self, x, f=conv_embed.ConvNeXt.forward: seen.append(x.detach().clone()) or f(self, x))
    monkeypatch.setattr(conv_embed, "zero_padded_frames",
                        lambda x, lengths, time_dim, f=conv_embed.zero_padded_frames:
                        seen.append(time_dim) or f(x, lengths, time_dim))
    torch.manual_seed(0)
    m = conv_embed.ConvEmbed(80, 32, channels=(8, 16, 64)).train()
    x = torch.randn(3, 60, 80)
    lens = torch.tensor([60, 45, 30])
    y, out_lens = m(x, lens)
    y.sum().backward()
    forward = [a for name, a in calls if name == "conv_stage_forward"]
    backward = [a for name, a in calls if name == "conv_stage_backward"]
    assert len(forward) == len(backward) == 3
    assert [a[7] for a in forward] == [0, 0, 1] and [a[7] for a in backward] == [1, 0, 0]
    # only the features' masked copy (time_dim 1) was made, none before ConvNeXt
    assert [s for s in seen if isinstance(s, int)] == [1]
    (convnext_in,) = [s for s in seen if isinstance(s, torch.Tensor)]
    for b, n in enumerate(out_lens.tolist()):
        assert bool((convnext_in[b, :, n:] == 0).all()) and bool((convnext_in[b, :, :n] != 0).any())


@pytest.mark.parametrize("prob", [0.0, 1.0])
def test_conv_embed_fused_stages_c_loops_match_the_layout_path(prob, monkeypatch, one_thread):
    """With the C loops on, the fused stages (csrc/conv_embed.c: SwooshR with a byte level,
    the third stage zeroing the padded frames) against the modules applied in turn (their
    SwooshR from csrc/swoosh.c, the masked copy before ConvNeXt): within 1e-5 (measured
    2.6e-6; libmvec's exp and log may round differently in the two loops' vector widths)."""
    if cpu_kernels.library() is None:
        pytest.skip("no C compiler: the C loops are off")
    calls, fused = _conv_stack_run("fused", prob, monkeypatch, c_loops=True)
    assert calls == [prob == 1.0] * 3
    layout_calls, layout = _conv_stack_run("layout", prob, monkeypatch, c_loops=True)
    assert not layout_calls
    for a, b in zip(fused, layout):
        assert float((a - b).abs().max() / b.abs().max()) < 1e-5


# ---- the encoder's C loops (csrc/whitener.c, csrc/encoder.c, balancer.c and swoosh.c's
# ---- later kernels) against the torch fast paths they replace on one thread

needs_kernels = pytest.mark.skipif(cpu_kernels.library() is None, reason="no C compiler: no C loops")


@pytest.fixture
def kernel_calls(monkeypatch):
    """The names of the C kernels called (so a test knows its C path ran)."""
    names: list[str] = []
    call = cpu_kernels.call

    def record(name, *args):
        names.append(name)
        return call(name, *args)

    monkeypatch.setattr(cpu_kernels, "call", record)
    return names


def _whitener_inputs(layout: str):
    """(x, grad, num_groups): a contiguous matrix, a channel slice of a wider projection
    output (frames in logical order with one row stride), heads as groups, and ConvNeXt's
    (B, F, T, C) view of a channels-last tensor (frames in memory order)."""
    gen = torch.Generator().manual_seed(3)
    if layout == "channels_last_view":
        base = torch.randn(2, 12, 9, 7, generator=gen).contiguous(memory_format=torch.channels_last)
        x = base.permute(0, 2, 3, 1)                        # (B, F, T, C), channels-last storage
        x = x * torch.linspace(0.2, 4.0, 12)                # not white (keeps the layout)
        g = torch.randn(2, 12, 9, 7, generator=gen).contiguous(memory_format=torch.channels_last)
        return x, g.permute(0, 2, 3, 1), 1
    wide = torch.randn(3, 40, 48, generator=gen) * torch.linspace(0.1, 5.0, 48)
    if layout == "matrix":
        return wide.reshape(120, 48).contiguous(), torch.randn(120, 48, generator=gen), 1
    if layout == "slice":
        return wide[..., :32], torch.randn(3, 40, 32, generator=gen), 1
    return wide, torch.randn(3, 40, 48, generator=gen), 4


@needs_kernels
@pytest.mark.parametrize("layout", ["matrix", "slice", "groups", "channels_last_view"])
def test_whitener_c_loops_match_the_torch_path(layout, one_thread, kernel_calls):
    """Not acting, acting below the limit, acting above it: the same decisions and
    probabilities as the torch fast path, the added gradient within float32 roundings
    (float64 sums against float32 ones), the gradient's layout kept."""
    from variants.components.whitener import Whitener, _WhitenerFunction

    x, g, groups = _whitener_inputs(layout)
    for limit, draw in ((1.0, 0.3), (1e6, 0.01), (1.0, 0.01)):
        res = {}
        for c_loop in (False, True):
            w = Whitener(num_groups=groups, whitening_limit=limit, prob=(0.025, 0.25))
            xi = x.detach().requires_grad_(True)
            with cpu_kernels.disabled(not c_loop):
                _WhitenerFunction.apply(xi, w, draw).backward(g)
            res[c_loop] = (xi.grad, w.prob)
        (ref, p_ref), (new, p_new) = res[False], res[True]
        assert p_new == p_ref
        assert new.shape == g.shape
        added = (ref - g).abs().max()
        if limit == 1.0 and draw < 0.25:                 # acts, above the limit
            assert float(added) > 1e-4
            assert float((new - ref).abs().max() / added) < 1e-4
        else:
            assert torch.equal(new, g) and torch.equal(ref, g)
    assert kernel_calls == ["whitener_centre", "whitener_metric"] + ["whitener_centre", "whitener_metric",
                                                                     "whitener_add"]


@needs_kernels
@pytest.mark.parametrize("case", ["slice", "small_channels_last", "contiguous"])
def test_balancer_c_loop_for_every_layout_matches_the_torch_path(case, one_thread, kernel_calls):
    """The Balancer's C backward also takes rows of a wider matrix and tensors under the
    (frames, channels) path's size limit: within 1e-5 of the added gradient."""
    from variants.components.balancer import _BalancerFunction, abs_to_rms, proportion_positive_to_mean

    gen = torch.Generator().manual_seed(5)
    if case == "slice":
        x, cd = (torch.randn(4, 30, 72, generator=gen) * 0.2 + 0.5)[..., :48], -1
        g = torch.randn(4, 30, 48, generator=gen)
    elif case == "small_channels_last":
        x = (torch.randn(3, 20, 32, generator=gen) * 0.2 + 0.5).permute(0, 2, 1)
        g, cd = torch.randn(3, 20, 32, generator=gen).permute(0, 2, 1), 1
    else:
        x, cd = torch.randn(50, 16, generator=gen) * 3.0, -1
        g = torch.randn(50, 16, generator=gen)
    limits = (proportion_positive_to_mean(0.05), proportion_positive_to_mean(0.95),
              abs_to_rms(0.2), abs_to_rms(1.0))
    res = {}
    for c_loop in (False, True):
        xi = x.detach().requires_grad_(True)
        with cpu_kernels.disabled(not c_loop):
            _BalancerFunction.apply(xi, limits, 0.04, cd % x.ndim).backward(g)
        res[c_loop] = xi.grad
    added = (res[False] - g).abs().max()
    assert float(added) > 1e-4
    assert float((res[True] - res[False]).abs().max() / added) < 1e-5
    assert kernel_calls == ["balancer_extra_rows"]


@needs_kernels
@pytest.mark.parametrize("with_mask", [False, True])
def test_swoosh_fn_and_deriv_c_loop_matches_torch(with_mask, one_thread, kernel_calls):
    x = torch.randn(3, 50, 40, generator=torch.Generator().manual_seed(0)) * 6
    mask = (torch.rand(3, 1, 40, generator=torch.Generator().manual_seed(1)) > 0.3).float() / 0.7
    m = mask if with_mask else None
    for act in (SwooshL(), SwooshR()):
        with cpu_kernels.disabled():
            y0, d0 = act.fn_and_deriv(x, m)
        y1, d1 = act.fn_and_deriv(x, m)
        assert torch.allclose(y1, y0, rtol=1e-6, atol=2e-6)
        assert torch.allclose(d1, d0, rtol=0, atol=3e-7)
    assert kernel_calls == ["swoosh_and_deriv"] * 2


@needs_kernels
def test_bias_norm_param_limit_and_bypass_c_loops_match_torch(one_thread, kernel_calls):
    """BiasNorm's forward and gradients, limit_param_value's sign flip (exact) and
    bypass_combine with a per-channel and a per-sequence scale and a channel slice."""
    from variants.components.bias_norm import BiasNorm
    from variants.components.lean_autograd import bypass_combine
    from variants.components.param_limit import _LimitParamValue

    gen = torch.Generator().manual_seed(2)
    m = BiasNorm(24).train()
    with torch.no_grad():
        m.bias.normal_(0.0, 0.3, generator=gen)
        m.log_scale.fill_(0.7)
    x = torch.randn(3, 11, 24, generator=gen) * 2 + 0.5
    g = torch.randn(3, 11, 24, generator=gen)
    res = {}
    for c_loop in (False, True):
        xi = x.detach().requires_grad_(True)
        m.zero_grad(set_to_none=True)
        random.seed(0)
        with cpu_kernels.disabled(not c_loop):
            y = m(xi)
            y.backward(g)
        res[c_loop] = (y.detach(), xi.grad, m.bias.grad, m.log_scale.grad)
    for a, b in zip(res[True], res[False]):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-6)

    p, gp = torch.randn(40, generator=gen), torch.randn(40, generator=gen)
    flips = []
    for c_loop in (False, True):
        pi = p.clone().requires_grad_(True)
        with cpu_kernels.disabled(not c_loop):
            _LimitParamValue.apply(pi, -0.5, 0.5).backward(gp)
        flips.append(pi.grad)
    assert torch.equal(flips[0], flips[1]) and not torch.equal(flips[0], gp)

    wide = torch.randn(2, 9, 40, generator=gen)
    for xs, c in ((wide[..., :32], torch.rand(32, generator=gen)),
                  (torch.randn(2, 9, 32, generator=gen), torch.rand(2, 1, 32, generator=gen))):
        ys, gb = torch.randn(2, 9, 32, generator=gen), torch.randn(2, 9, 32, generator=gen)
        res = {}
        for c_loop in (False, True):
            ins = [t.detach().requires_grad_(True) for t in (xs, ys, c)]
            with cpu_kernels.disabled(not c_loop):
                out = bypass_combine(*ins)
                grads = torch.autograd.grad(out, ins, gb)
            res[c_loop] = (out.detach(), *grads)
        for a, b in zip(res[True], res[False]):
            assert a.shape == b.shape
            assert torch.allclose(a, b, rtol=1e-5, atol=1e-6)
    assert {"bias_norm_forward", "bias_norm_backward", "limit_param_grad", "bypass_forward",
            "bypass_backward"} <= set(kernel_calls)


@needs_kernels
@pytest.mark.parametrize("k", [2, 4])
def test_downsample_weighted_group_sum_c_loop_matches_torch(k, one_thread, kernel_calls):
    """Downsample with lengths (the gather of padded frames: weighted_group_sum) in one C
    pass each way: output and gradients within float32 roundings of the torch ops."""
    from variants.components.downsample import Downsample

    gen = torch.Generator().manual_seed(k)
    m = Downsample(k)
    with torch.no_grad():
        m.bias.normal_(0.0, 1.0, generator=gen)
    x = torch.randn(3, 2 * k * 5 + 1, 24, generator=gen)
    lengths = torch.tensor([x.shape[1], 7, 1])
    g = None
    res = {}
    for c_loop in (False, True):
        xi = x.detach().requires_grad_(True)
        m.zero_grad(set_to_none=True)
        with cpu_kernels.disabled(not c_loop):
            y, _ = m(xi, lengths)
            g = torch.randn(y.shape, generator=torch.Generator().manual_seed(9))
            y.backward(g)
        res[c_loop] = (y.detach(), xi.grad, m.bias.grad)
    for a, b in zip(res[True], res[False]):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-6)
    assert kernel_calls == ["group_sum_forward", "group_sum_backward"]
