"""Issue 22: the functions that keep less for backward (variants.components.lean_autograd,
ConvNeXt's recomputed hidden layer, the feed-forward and convolution modules' recomputed
hidden layers) give the plain expressions' outputs exactly and their gradients, and keep
less; a whole Zipformer's training step is unchanged by them."""
from __future__ import annotations

import random

import pytest
import torch

from harness.profile.live_bytes import LiveBytes
from harness.profile.saved_bytes import count_saved_bytes
from variants import build_model, fast_paths
from variants.components import (bypass, convnext, convolution_module, downsample, feed_forward,
                                 nonlinear_attention)
from variants.components.balancer import Balancer, apply_balancer
from variants.components.convnext import ConvNeXt
from variants.components.convolution_module import ConvolutionModule
from variants.components.feed_forward import FeedForward
from variants.components.lean_autograd import bypass_combine, gate, keep_hidden_layers, weighted_group_sum


@pytest.fixture(autouse=True)
def gpu_paths():
    """The paths a GPU runs (on CPU, ConvNeXt otherwise takes its faster channels-last path)."""
    with fast_paths.device_independent():
        yield


def plain_gate(x, s, fn="sigmoid"):
    return x * (torch.tanh(s) if fn == "tanh" else torch.sigmoid(s))


def plain_bypass(x, y, c):
    return x + (y - x) * c


def plain_group_sum(x, index, weights, k):
    xg = torch.gather(x, 1, index)
    b, n, c = xg.shape
    return (xg.reshape(b, n // k, k, c) * weights).sum(dim=2)


def no_checkpoint(fn, *args, **kwargs):
    """``torch.utils.checkpoint.checkpoint`` replaced by a plain call (everything kept)."""
    return fn(*args)


def plain_hidden(x, w0, b0, w1, b1, w2, b2, m, balance):
    h = m.pointwise_conv1(m.depthwise_conv(x))
    return m.pointwise_conv2(m.activation(h if balance is None else apply_balancer(h, balance)))


def saved_bytes(fn, *args):
    """Output, and bytes kept for backward beyond the inputs (which in the model other
    nodes keep anyway: module inputs, halves of a projection's output)."""
    out, saved = count_saved_bytes(lambda: fn(*args),
                                   exclude=[a for a in args if isinstance(a, torch.Tensor)])
    return out, sum(s.nbytes for s in saved)


def test_lean_functions_match_the_plain_expressions_and_keep_less():
    torch.manual_seed(0)
    x = torch.randn(2, 7, 6, dtype=torch.float64, requires_grad=True)
    s = torch.randn(2, 7, 6, dtype=torch.float64, requires_grad=True)
    idx = torch.minimum(torch.arange(8).unsqueeze(0), torch.tensor([[6], [4]])).unsqueeze(-1).expand(2, 8, 6)
    w = torch.randn(2, 1, dtype=torch.float64, requires_grad=True)
    cases = [(gate, plain_gate, (x, s, "sigmoid")), (gate, plain_gate, (x, s, "tanh")),
             (bypass_combine, plain_bypass, (x, s, torch.rand(6, dtype=torch.float64, requires_grad=True))),
             (bypass_combine, plain_bypass, (x, s, torch.rand(2, 1, 6, dtype=torch.float64,
                                                                requires_grad=True))),
             (weighted_group_sum, plain_group_sum, (x, idx, w, 2))]
    for lean, plain, args in cases:
        tensors = [a for a in args if isinstance(a, torch.Tensor) and a.requires_grad]
        (y1, n1), (y2, n2) = saved_bytes(lean, *args), saved_bytes(plain, *args)
        assert torch.equal(y1, y2) and n1 < n2 and n2 >= y1.nbytes, lean.__name__
        g = torch.randn_like(y1)
        for a, b in zip(torch.autograd.grad(y1, tensors, g), torch.autograd.grad(y2, tensors, g)):
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    assert torch.autograd.gradcheck(lambda x, w: weighted_group_sum(x, idx, w, 2), (x, w))


@pytest.mark.parametrize("balancer_prob", [0.0, 1.0])
def test_convnext_recomputed_hidden_layer_matches_plain(monkeypatch, balancer_prob):
    torch.manual_seed(0)
    m = ConvNeXt(8, layerdrop_rate=0.0).train()
    m.hidden_balancer = Balancer(24, channel_dim=1, min_positive=0.3, max_positive=1.0,
                                 min_abs=0.75, max_abs=5.0, prob=balancer_prob)
    x = torch.randn(5, 8, 11, 9, requires_grad=True)      # 5 utterances: slices of 2, 2, 1

    def run():
        random.seed(0)
        with LiveBytes() as live:
            y = m(x)
            kept = live.current
            grads = torch.autograd.grad(y.square().sum(), [x, *m.parameters()])
        return y.detach(), grads, kept

    y1, g1, kept1 = run()
    monkeypatch.setattr(convnext._LeanHidden, "apply", plain_hidden)
    y2, g2, kept2 = run()
    assert torch.equal(y1, y2)
    for a, b in zip(g1, g2):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    hidden = 5 * 24 * 11 * 9 * 4                            # one float32 hidden layer
    assert kept2 - kept1 >= hidden + x.nbytes               # and the depth-wise output


def test_zipformer_step_is_unchanged_by_the_lean_functions(monkeypatch):
    torch.manual_seed(0)
    model = build_model("zipformer-tiny", objective="ctc").double().train()
    model.set_batch_count(30000.0)
    x, lens = torch.randn(2, 160, 80, dtype=torch.float64), torch.tensor([160, 131])

    def step():
        random.seed(1)
        torch.manual_seed(1)
        out, out_lens = model.forward_encoder(x, lens)
        grads = torch.autograd.grad(out.square().mean(), list(model.parameters()), allow_unused=True)
        return out.detach(), out_lens, grads

    lean = step()
    for mod in (convolution_module, nonlinear_attention):
        monkeypatch.setattr(mod, "gate", plain_gate)
    monkeypatch.setattr(bypass, "bypass_combine", plain_bypass)
    monkeypatch.setattr(downsample, "weighted_group_sum", plain_group_sum)
    monkeypatch.setattr(convnext._LeanHidden, "apply", plain_hidden)
    for mod in (feed_forward, convolution_module):
        monkeypatch.setattr(mod, "checkpoint", no_checkpoint)
    plain = step()
    assert torch.equal(lean[0], plain[0]) and torch.equal(lean[1], plain[1])
    for a, b in zip(lean[2], plain[2]):
        assert (a is None) == (b is None)
        if a is not None:
            torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("balancer_prob", [0.0, 1.0])
def test_feed_forward_and_convolution_module_recompute_their_hidden_layers(monkeypatch, balancer_prob):
    torch.manual_seed(0)
    ffn = FeedForward(16, 48, dropout=0.2).train()
    ffn.hidden_balancer = Balancer(48, min_positive=0.3, max_positive=1.0, min_abs=0.75, max_abs=5.0,
                                   prob=balancer_prob)
    conv = ConvolutionModule(16, 5).train()
    conv.balancer1 = Balancer(16, min_positive=0.05, max_positive=1.0, min_abs=1.5, max_abs=5.0,
                              prob=balancer_prob)
    x = torch.randn(3, 11, 16, requires_grad=True)
    pad = torch.zeros(3, 11, dtype=torch.bool)
    pad[1, 8:] = True
    # what plain autograd keeps on top: FFN's hidden layer; the convolution module's
    # projection (2 x 16 channels) and its gated, zeroed copy (16)
    for m, mod, args, hidden in ((ffn, feed_forward, (), 48), (conv, convolution_module, (pad,), 48)):
        def run():
            random.seed(0)
            torch.manual_seed(0)
            with LiveBytes() as live:
                y = m(x, *args)
                kept = live.current
                grads = torch.autograd.grad(y.square().sum(), [x, *m.parameters()])
            return y.detach(), grads, kept

        y1, g1, kept1 = run()
        monkeypatch.setattr(mod, "checkpoint", no_checkpoint)
        y2, g2, kept2 = run()
        monkeypatch.undo()
        assert torch.equal(y1, y2), type(m).__name__
        for a, b in zip(g1, g2):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
        assert kept2 - kept1 >= 3 * 11 * hidden * 4, type(m).__name__
        with keep_hidden_layers():                  # the switch: plain autograd, same values
            y3, g3, kept3 = run()
        assert torch.equal(y1, y3) and kept3 == kept2
        for a, b in zip(g1, g3):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
