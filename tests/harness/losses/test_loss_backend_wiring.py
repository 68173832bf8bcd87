"""The backend setting reaches the transducer loss and is recorded; a stand-in
"k2" module (delegating to our functions with k2's keyword names) proves the
k2 path is wired without needing k2 installed."""
from __future__ import annotations

import types

import pytest
import torch

from harness.losses import LossConfig, compute_loss, k2_backend
from harness.losses.k2_backend import TORCH_BACKEND, resolve_rnnt_backend

calls: list[str] = []


def _recording(name, fn):
    def wrapper(*args, **kwargs):
        calls.append(name)
        return fn(*args, **kwargs)
    return wrapper


FAKE_K2 = types.SimpleNamespace(
    rnnt_loss=_recording("rnnt_loss", TORCH_BACKEND.rnnt_loss),
    rnnt_loss_smoothed=_recording("rnnt_loss_smoothed", TORCH_BACKEND.rnnt_loss_smoothed),
    get_rnnt_prune_ranges=_recording(
        "get_rnnt_prune_ranges",
        lambda *, px_grad, py_grad, boundary, s_range: TORCH_BACKEND.get_prune_ranges(
            px_grad, py_grad, boundary, s_range)),
    do_rnnt_pruning=_recording("do_rnnt_pruning", TORCH_BACKEND.do_rnnt_pruning),
    rnnt_loss_pruned=_recording("rnnt_loss_pruned", TORCH_BACKEND.rnnt_loss_pruned),
)


def test_auto_prefers_k2_and_records_it(tiny_model, monkeypatch):
    monkeypatch.setattr(k2_backend, "import_k2", lambda: FAKE_K2)
    assert resolve_rnnt_backend("auto").name == "k2"
    assert resolve_rnnt_backend("torch").name == "torch"
    model = tiny_model("transducer").eval()
    torch.manual_seed(0)
    feats, lens, tokens = torch.randn(2, 90, 80), torch.tensor([90, 70]), [[1, 2, 3], [4, 5]]
    calls.clear()
    loss_k2, info_k2 = compute_loss(model, feats, lens, tokens, 100, LossConfig(rnnt_backend="auto"))
    assert info_k2["rnnt_backend"] == "k2"
    assert calls == ["rnnt_loss_smoothed", "get_rnnt_prune_ranges", "do_rnnt_pruning", "rnnt_loss_pruned"]
    loss_torch, info_torch = compute_loss(model, feats, lens, tokens, 100, LossConfig(rnnt_backend="torch"))
    assert info_torch["rnnt_backend"] == "torch"
    assert loss_k2.item() == pytest.approx(loss_torch.item(), rel=1e-6)


def test_missing_k2_falls_back_or_fails_clearly(monkeypatch):
    monkeypatch.setattr(k2_backend, "import_k2", lambda: None)
    assert resolve_rnnt_backend("auto").name == "torch"
    with pytest.raises(RuntimeError, match="rnnt_backend='k2' but k2 does not import"):
        resolve_rnnt_backend("k2")
    with pytest.raises(ValueError, match="unknown rnnt_backend 'cuda'; allowed: auto, torch, k2"):
        resolve_rnnt_backend("cuda")
