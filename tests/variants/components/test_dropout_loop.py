"""The CPU dropout loop (csrc/dropout.c) draws torch's own masks: outputs, gradients and the
default generator's state afterwards are the bits torch.nn.functional.dropout gives."""
from __future__ import annotations

import pytest
import torch

from variants import build_model, fast_paths
from variants.components import cpu_kernels
from variants.components.dropout import Dropout, _DropoutCPU, dropout


def _both(x: torch.Tensor, p: float, seed: int, burn: int):
    """(ours, torch's): output, input gradient and generator state after, from one state."""
    out = []
    for fn in (dropout, lambda t, q, train: torch.nn.functional.dropout(t, q, train)):
        torch.manual_seed(seed)
        if burn:
            torch.rand(burn)               # leave the twister at an odd or even word, or at a state's end
        xi = x.detach().clone().requires_grad_(True)
        y = fn(xi, p, True)
        after = torch.default_generator.get_state()
        g = torch.linspace(-1.0, 1.0, y.numel()).view_as(y)
        (y * g).sum().backward()
        out.append((y.detach(), xi.grad, after))
    return out


@pytest.mark.parametrize("shape,p", [((5, 66, 96), 0.1), ((3, 4, 17, 17), 0.1), ((3,), 0.5),
                                     ((1301,), 0.3), ((2, 311, 38), 0.9999), ((700,), 1e-9)])
@pytest.mark.parametrize("burn", [0, 1, 622, 623, 624, 1247])
def test_the_same_masks_values_gradients_and_generator_state_as_torch(shape, p, burn, one_thread):
    x = torch.randn(shape)
    x.view(-1)[::7] = -x.view(-1)[::7].abs()      # negative values: x * 0 is -0.0 in torch too
    (y, gx, state), (y_ref, gx_ref, state_ref) = _both(x, p, seed=11, burn=burn)
    assert torch.equal(y, y_ref) and torch.equal(y.signbit(), y_ref.signbit())
    assert torch.equal(gx, gx_ref)
    assert torch.equal(state, state_ref)


def test_the_loop_runs_where_usable_and_torch_elsewhere(one_thread, monkeypatch):
    calls = []
    real = _DropoutCPU.apply
    monkeypatch.setattr(_DropoutCPU, "apply", lambda *a: calls.append(a) or real(*a))
    x = torch.randn(4, 9, 16)
    dropout(x, 0.1, True)
    assert len(calls) == 1
    dropout(x.transpose(0, 2), 0.1, True)         # another dense layout: memory order, as torch
    assert len(calls) == 2
    for other in (lambda: dropout(x[:, ::2], 0.1, True),             # not dense: torch's
                  lambda: dropout(x.double(), 0.1, True),             # float64: torch's
                  lambda: dropout(x, 0.0, True), lambda: dropout(x, 0.1, False)):
        other()
    with fast_paths.reference_paths():
        dropout(x, 0.1, True)
    with cpu_kernels.disabled():
        dropout(x, 0.1, True)
    assert len(calls) == 2
    with pytest.raises(ValueError):
        dropout(x, 1.5, True)                       # torch's own check


def test_a_permuted_layout_draws_in_memory_order(one_thread):
    x = torch.randn(6, 5, 7).permute(2, 0, 1)     # dense, not contiguous
    (y, gx, state), (y_ref, gx_ref, state_ref) = _both(x, 0.25, seed=3, burn=0)
    assert torch.equal(y, y_ref) and torch.equal(gx, gx_ref) and torch.equal(state, state_ref)


def test_conformer_forward_backward_is_bit_identical_with_torchs_dropout(one_thread, monkeypatch):
    """The Conformer's dropouts (after each module, the feed-forward's hidden, the attention
    weights, the positional encodings) through the loop give the output and gradients of
    torch's dropout in their place, and leave the generator where torch leaves it."""
    calls = []
    loop = _DropoutCPU.apply
    torchs = lambda x, p, state: torch.nn.functional.dropout(x, p, True)  # noqa: E731
    torch.manual_seed(0)
    model = build_model("conformer-tiny").train()
    x, lens = torch.randn(3, 120, 80), torch.tensor([120, 97, 64])
    results = []
    for apply in (loop, torchs):
        monkeypatch.setattr(_DropoutCPU, "apply", lambda *a, f=apply: calls.append(f) or f(*a))
        torch.manual_seed(5)
        out, _ = model(x, lens)              # Conv2d subsampling + encoder
        loss = (out * torch.linspace(-1.0, 1.0, out.shape[-1])).sum()
        grads = torch.autograd.grad(loss, list(model.parameters()), allow_unused=True)
        results.append((out.detach(), grads, torch.default_generator.get_state()))
    assert calls.count(loop) == calls.count(torchs) >= 3 * len(model.encoder.layers)
    (out, grads, state), (out_ref, grads_ref, state_ref) = results
    assert torch.equal(out, out_ref)
    assert sum(g is not None for g in grads) > 10
    assert all((a is None and b is None) or torch.equal(a, b) for a, b in zip(grads, grads_ref))
    assert torch.equal(state, state_ref)


def test_dropout_module_is_torchs_module_with_the_same_state():
    m = Dropout(0.2)
    assert isinstance(m, torch.nn.Dropout) and m.state_dict() == {} and repr(m) == repr(torch.nn.Dropout(0.2))


def test_a_broadcast_gradient_takes_torchs_arithmetic(one_thread):
    grads = []
    for fn in (dropout, lambda t, q, train: torch.nn.functional.dropout(t, q, train)):
        torch.manual_seed(2)
        x = torch.randn(4, 6, 8, requires_grad=True)
        fn(x, 0.3, True).sum().backward()           # the gradient arrives expanded (stride 0)
        grads.append(x.grad)
    assert torch.equal(grads[0], grads[1])


def test_conformer_feed_forward_swish_and_dropout_in_one_loop(one_thread, monkeypatch):
    """The macaron feed-forward's Swish + dropout as one loop: the same mask as torch's
    dropout, the values and gradients within float32 roundings of torch's Swish."""
    from variants.components.macaron_feed_forward import MacaronFeedForward, _SwishDropoutCPU
    calls = []
    real = _SwishDropoutCPU.apply
    monkeypatch.setattr(_SwishDropoutCPU, "apply", lambda *a: calls.append(1) or real(*a))
    torch.manual_seed(0)
    ff = MacaronFeedForward(16, 64, dropout=0.3).train()
    x = torch.randn(3, 21, 16) * 4
    outs = []
    for off in (False, True):
        torch.manual_seed(9)
        with cpu_kernels.disabled(off):
            xi = x.clone().requires_grad_(True)
            h = torch.nn.functional.linear(xi, ff.linear1.weight, ff.linear1.bias)
            y = ff(xi)
            (y * torch.linspace(-2, 2, 16)).sum().backward()
        outs.append((y.detach(), xi.grad, ff.linear1.weight.grad.clone(), torch.default_generator.get_state()))
        ff.zero_grad()
    assert calls == [1]
    (y, gx, gw, state), (y_ref, gx_ref, gw_ref, state_ref) = outs
    assert torch.equal(state, state_ref)
    torch.testing.assert_close(y, y_ref, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(gx, gx_ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(gw, gw_ref, rtol=1e-5, atol=1e-5)
    # the same units dropped: the hidden layer's zeros fall where torch's do
    with torch.no_grad():
        torch.manual_seed(9)
        hid = ff.dropout(ff.activation(h.detach()))
    torch.manual_seed(9)
    hid_loop = _SwishDropoutCPU.apply(h.detach(), 0.3, torch.default_generator.get_state())
    assert torch.equal(hid == 0, hid_loop == 0)
