"""The backend setting reaches the transducer loss and is recorded; a stand-in
"k2" module (delegating to our functions with k2's keyword names) proves the
k2 path is wired without needing k2 installed; the Triton backend runs on CPU
in Triton's interpreter."""
from __future__ import annotations

import types

import pytest
import torch

from harness.losses import LossConfig, compute_loss, rnnt_backend
from harness.losses.rnnt_backend import TORCH_BACKEND, resolve_rnnt_backend

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
    monkeypatch.setattr(rnnt_backend, "import_k2", lambda: FAKE_K2)
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
    monkeypatch.setattr(rnnt_backend, "import_k2", lambda: None)
    assert resolve_rnnt_backend("auto").name == "torch"
    with pytest.raises(RuntimeError, match="rnnt_backend='k2' but k2 does not import"):
        resolve_rnnt_backend("k2")
    with pytest.raises(ValueError, match="unknown rnnt_backend 'cuda'; allowed: auto, torch, triton, k2"):
        resolve_rnnt_backend("cuda")


def test_auto_picks_triton_for_cuda_tensors_only(triton_interpreter, monkeypatch):
    monkeypatch.setattr(rnnt_backend, "import_k2", lambda: None)
    assert resolve_rnnt_backend("auto", torch.device("cuda")).name == "triton"
    assert resolve_rnnt_backend("auto", "cuda:1").name == "triton"
    assert resolve_rnnt_backend("auto", torch.device("cpu")).name == "torch"
    assert resolve_rnnt_backend("auto").name == "torch"  # device unknown
    assert resolve_rnnt_backend("torch", "cuda").name == "torch"
    monkeypatch.setattr(rnnt_backend, "import_k2", lambda: FAKE_K2)
    assert resolve_rnnt_backend("auto", "cuda").name == "k2"
    assert resolve_rnnt_backend("triton", "cuda").name == "triton"
    monkeypatch.setattr(rnnt_backend, "import_k2", lambda: None)
    monkeypatch.setattr(rnnt_backend, "import_triton_recursion", lambda: None)
    assert resolve_rnnt_backend("auto", "cuda").name == "torch"
    with pytest.raises(RuntimeError, match="rnnt_backend='triton' but triton does not import"):
        resolve_rnnt_backend("triton", "cuda")


def test_forced_triton_on_cpu_needs_the_interpreter(triton_interpreter, monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET")
    with pytest.raises(RuntimeError, match=r"rnnt_backend='triton' needs CUDA tensors \(got cpu\); on a CPU "
                                           "set TRITON_INTERPRET=1"):
        resolve_rnnt_backend("triton", "cpu")
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert resolve_rnnt_backend("triton", "cpu").name == "triton"
    monkeypatch.setattr(triton_interpreter, "interpreted", lambda: False)
    with pytest.raises(RuntimeError, match="TRITON_INTERPRET=1 was set after"):
        resolve_rnnt_backend("triton", "cpu")
    with pytest.raises(RuntimeError, match="kernels need CUDA tensors, got cpu"):
        triton_interpreter.mutual_information_recursion_triton(torch.zeros(1, 1, 2), torch.zeros(1, 2, 1))


def test_triton_backend_is_used_and_recorded(tiny_model, triton_interpreter):
    model = tiny_model("transducer").eval()
    torch.manual_seed(1)
    feats, lens, tokens = torch.randn(2, 70, 80), torch.tensor([70, 50]), [[1, 2, 3], [4]]
    loss_tr, info_tr = compute_loss(model, feats, lens, tokens, 100, LossConfig(rnnt_backend="triton"))
    loss_torch, info_torch = compute_loss(model, feats, lens, tokens, 100, LossConfig(rnnt_backend="torch"))
    assert (info_tr["rnnt_backend"], info_torch["rnnt_backend"]) == ("triton", "torch")
    for key in ("simple_loss", "pruned_loss"):
        assert info_tr[key] == pytest.approx(info_torch[key], rel=1e-5)
