"""The Triton mutual-information kernels (run on CPU by Triton's interpreter) against the
PyTorch recursion and the float64 per-cell reference: values, gradients, ragged
batches and the corner shapes; then the RNN-T losses on them. Shapes are tiny:
the interpreter runs each diagonal step in Python."""
from __future__ import annotations

import json

import pytest
import torch

from support.compiled_triton import run_compiled_triton
from harness.losses import make_boundary
from harness.losses.mutual_information import mutual_information_recursion
from harness.losses.rnnt_backend import TORCH_BACKEND, resolve_rnnt_backend
from test_loss_mutual_information import _random, reference_recursion


@pytest.fixture
def triton_mi(triton_interpreter):
    return triton_interpreter.mutual_information_recursion_triton


def _both(px, py, boundary, fn):
    """(scores, px_grad, py_grad) of ``fn`` through autograd with a random output gradient."""
    px = px.detach().clone().requires_grad_(True)
    py = py.detach().clone().requires_grad_(True)
    scores = fn(px, py, boundary)
    weights = torch.linspace(0.5, 1.5, scores.numel(), dtype=scores.dtype)
    gx, gy = torch.autograd.grad((scores * weights).sum(), (px, py))
    return scores.detach(), gx, gy


# (B, S, T, ends): ragged, S = 0, S > T, T = 1, B = 1, and a larger B
CASES = {
    "ragged": (4, 5, 7, [(5, 7), (3, 4), (0, 6), (5, 1)]),
    "S=0": (2, 0, 3, [(0, 3), (0, 1)]),
    "S>T": (2, 6, 2, [(6, 2), (4, 1)]),
    "T=1": (3, 3, 1, [(3, 1), (1, 1), (0, 1)]),
    "B=1": (1, 4, 4, [(4, 4)]),
    "B=9": (9, 2, 3, [(2, 3), (1, 3), (2, 1), (0, 2), (1, 1), (2, 2), (0, 0), (1, 2), (2, 3)]),
}


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
def test_values_and_gradients_match_torch_and_reference(triton_mi, case, dtype):
    B, S, T, ends = CASES[case]
    px, py = _random(B, S, T, seed=len(case))
    boundary = torch.tensor([[0, 0, s, t] for s, t in ends])
    px, py = px.to(dtype), py.to(dtype)
    got, gx, gy = _both(px, py, boundary, triton_mi)
    want, wx, wy = _both(px, py, boundary, mutual_information_recursion)
    assert got.dtype == dtype and gx.dtype == dtype
    for b, (s, t) in enumerate(ends):
        ref = reference_recursion(px[b].double(), py[b].double(), s, t)
        assert got[b].item() == pytest.approx(ref, rel=1e-12 if dtype == torch.float64 else 1e-5)
    tol = dict(rtol=1e-12, atol=1e-12) if dtype == torch.float64 else dict(rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(got, want, **tol)
    gtol = dict(rtol=1e-12, atol=1e-12) if dtype == torch.float64 else dict(rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(gx, wx, **gtol)
    torch.testing.assert_close(gy, wy, **gtol)


def test_return_grad_matches_torch(triton_mi):
    px, py = _random(3, 4, 5, seed=7)
    px, py = px.float(), py.float()
    boundary = torch.tensor([[0, 0, 4, 5], [0, 0, 2, 3], [0, 0, 4, 2]])
    scores, (px_grad, py_grad) = triton_mi(px, py, boundary, return_grad=True)
    want, (wx, wy) = mutual_information_recursion(px, py, boundary, return_grad=True)
    torch.testing.assert_close(scores, want, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(px_grad, wx, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(py_grad, wy, rtol=1e-4, atol=1e-5)
    assert float(px_grad[1, 2:].abs().sum() + py_grad[1, :, 3:].abs().sum()) == 0.0  # outside the box


def test_diagonals_longer_than_a_block_and_unreachable_cells(triton_mi, triton_interpreter, monkeypatch):
    """Two lanes per step (loop over blocks), and -inf arcs as the pruned loss makes them."""
    monkeypatch.setattr(triton_interpreter, "MAX_BLOCK", 2)
    px, py = _random(2, 5, 6, seed=8)
    px[0, 1:3, 2:] = float("-inf")
    py[1, 3:, :2] = float("-inf")
    boundary = torch.tensor([[0, 0, 5, 6], [0, 0, 4, 5]])
    got, gx, gy = _both(px, py, boundary, triton_mi)
    want, wx, wy = _both(px, py, boundary, mutual_information_recursion)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(gx, wx, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(gy, wy, rtol=1e-12, atol=1e-12)


def test_no_path_gives_minus_inf_and_zero_gradient(triton_mi):
    px, py = _random(1, 2, 2, seed=9)
    py[0, 0, :] = float("-inf")
    px[0, :, 0] = float("-inf")  # (0, 0) has no way out
    got, gx, gy = _both(px, py, None, triton_mi)
    assert got.item() == float("-inf")
    assert float(gx.abs().sum() + gy.abs().sum()) == 0.0


@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_documented_conversions(triton_mi, backend):
    """Non-contiguous inputs are copied; float16/bfloat16 are computed in float32 (both recursions)."""
    recursion = triton_mi if backend == "triton" else mutual_information_recursion
    px, py = _random(2, 3, 4, seed=10)
    boundary = torch.tensor([[0, 0, 3, 4], [0, 0, 2, 2]])
    want = mutual_information_recursion(px, py, boundary)
    strided_px = px.transpose(1, 2).contiguous().transpose(1, 2)
    assert not strided_px.is_contiguous()
    torch.testing.assert_close(recursion(strided_px, py, boundary), want, rtol=1e-12, atol=1e-12)
    for half in (torch.float16, torch.bfloat16):
        hx, hy = px.to(half).requires_grad_(True), py.to(half).requires_grad_(True)
        got = recursion(hx, hy, boundary)
        assert got.dtype == torch.float32
        ref = mutual_information_recursion(hx.detach().float(), hy.detach().float(), boundary)
        torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-6)
        got.sum().backward()
        assert hx.grad.dtype == half and torch.isfinite(hx.grad.float()).all()


def test_bad_boundary_names_the_utterance(triton_mi):
    px, py = torch.zeros(3, 2, 4), torch.zeros(3, 3, 3)
    with pytest.raises(ValueError, match=r"utterance 2: boundary \[0, 0, 2, 5\]: boundary ends"):
        triton_mi(px, py, torch.tensor([[0, 0, 2, 3], [0, 0, 1, 1], [0, 0, 2, 5]]))
    with pytest.raises(ValueError, match=r"utterance 1: .*begin symbol/frame"):
        triton_mi(px, py, torch.tensor([[0, 0, 2, 3], [0, 1, 1, 1], [0, 0, 2, 3]]))


def test_rnnt_losses_on_the_kernels_match_torch(triton_interpreter):
    """The pruned path's three losses through the Triton backend (values and gradients)."""
    triton = resolve_rnnt_backend("triton", "cpu")
    g = torch.Generator().manual_seed(11)
    B, S, T, V = 2, 3, 4, 6
    symbols = torch.randint(1, V, (B, S), generator=g)
    boundary = make_boundary(torch.tensor([3, 2]), torch.tensor([4, 3]))
    lm = torch.randn(B, S + 1, V, generator=g, requires_grad=True)
    am = torch.randn(B, T, V, generator=g, requires_grad=True)
    results = []
    for backend in (TORCH_BACKEND, triton):
        simple, (px_grad, py_grad) = backend.rnnt_loss_smoothed(
            lm=lm, am=am, symbols=symbols, termination_symbol=0, lm_only_scale=0.25,
            am_only_scale=0.1, boundary=boundary, reduction="sum", return_grad=True)
        ranges = backend.get_prune_ranges(px_grad, py_grad, boundary, 2)
        am_p, lm_p = backend.do_rnnt_pruning(am=am, lm=lm, ranges=ranges)
        pruned = backend.rnnt_loss_pruned(logits=am_p + lm_p, symbols=symbols, ranges=ranges,
                                          termination_symbol=0, boundary=boundary, reduction="none")
        full = backend.rnnt_loss(logits=am.unsqueeze(2) + lm.unsqueeze(1), symbols=symbols,
                                 termination_symbol=0, boundary=boundary, reduction="mean")
        grads = torch.autograd.grad(simple + pruned.sum() + full, (lm, am))
        results.append((simple, pruned, full, ranges, *grads))
    (s0, p0, f0, r0, *g0), (s1, p1, f1, r1, *g1) = results
    assert torch.equal(r0, r1)
    for a, b in [(s0, s1), (p0, p1), (f0, f1)]:
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-5)
    for a, b in zip(g0, g1):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5)


COMPILE_FOR_SM90 = """
import json
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from harness.losses import mutual_information_triton as m

out = {}
for dtype in ("fp32", "fp64"):
    ptr = "*" + dtype
    signatures = {
        m._mi_forward_kernel: dict(px_ptr=ptr, py_ptr=ptr, ends_ptr="*i64", p_ptr=ptr, score_ptr=ptr),
        m._mi_backward_kernel: dict(px_ptr=ptr, ends_ptr="*i64", p_ptr=ptr, grad_ptr=ptr, gx_ptr=ptr,
                                    gy_ptr=ptr),
    }
    for kernel, sig in signatures.items():
        src = ASTSource(kernel, signature={**sig, "S": "i32", "T": "i32", "BLOCK": "constexpr"},
                        constexprs={"BLOCK": 128})
        asm = triton.compile(src, target=GPUTarget("cuda", 90, 32),
                             options={"num_warps": 4, "enable_fp_fusion": True}).asm
        out[f"{kernel.__name__} {dtype}"] = dict(cubin=len(asm["cubin"]), barrier="bar.sync" in asm["ptx"],
                                                 l2_loads="ld.global.cg" in asm["ptx"])
print(json.dumps(out))
"""


def test_kernels_compile_for_a_cuda_gpu(triton_interpreter, tmp_path):
    """No GPU needed: Triton's own compiler (and its bundled ptxas) builds both kernels, float32
    and float64, for sm_90 (H100/H200), with the block barrier between diagonals and L2 reads of
    the scores. A subprocess, because this process runs the kernels in the interpreter."""
    result = json.loads(run_compiled_triton(COMPILE_FOR_SM90, tmp_path).strip().splitlines()[-1])
    assert len(result) == 4
    for name, r in result.items():
        assert r["cubin"] > 0 and r["barrier"] and r["l2_loads"], (name, r)
