"""The lattice recursion against a per-cell reference, and its custom backward."""
from __future__ import annotations

import math

import pytest
import torch

from harness.losses.mutual_information import mutual_information_recursion


def reference_recursion(px: torch.Tensor, py: torch.Tensor, S: int, T: int) -> float:
    """p[s, t] = logaddexp(p[s-1, t] + px[s-1, t], p[s, t-1] + py[s, t-1]), one cell at a time."""
    p = [[-math.inf] * (T + 1) for _ in range(S + 1)]
    for s in range(S + 1):
        for t in range(T + 1):
            if s == 0 and t == 0:
                p[s][t] = 0.0
                continue
            terms = []
            if s > 0:
                terms.append(p[s - 1][t] + float(px[s - 1, t]))
            if t > 0:
                terms.append(p[s][t - 1] + float(py[s, t - 1]))
            m = max(terms)
            p[s][t] = m if m == -math.inf else m + math.log(sum(math.exp(x - m) for x in terms))
    return p[S][T]


def _random(B, S, T, seed=0):
    g = torch.Generator().manual_seed(seed)
    px = torch.randn(B, S, T + 1, generator=g, dtype=torch.float64)
    py = torch.randn(B, S + 1, T, generator=g, dtype=torch.float64)
    return px, py


def test_matches_per_cell_reference_with_ragged_boundaries():
    px, py = _random(4, 5, 7)
    ends = [(5, 7), (3, 4), (0, 6), (5, 1)]
    boundary = torch.tensor([[0, 0, s, t] for s, t in ends])
    got = mutual_information_recursion(px, py, boundary)
    for b, (s, t) in enumerate(ends):
        assert got[b].item() == pytest.approx(reference_recursion(px[b], py[b], s, t), abs=1e-10)


def test_default_boundary_is_whole_lattice():
    px, py = _random(2, 3, 4, seed=1)
    got = mutual_information_recursion(px, py)
    for b in range(2):
        assert got[b].item() == pytest.approx(reference_recursion(px[b], py[b], 3, 4), abs=1e-10)


def test_gradcheck_with_boundary():
    px, py = _random(3, 3, 4, seed=2)
    px.requires_grad_(True)
    py.requires_grad_(True)
    boundary = torch.tensor([[0, 0, 3, 4], [0, 0, 1, 2], [0, 0, 2, 4]])
    assert torch.autograd.gradcheck(lambda a, b: mutual_information_recursion(a, b, boundary), (px, py))


def test_return_grad_equals_autograd_and_is_an_occupation():
    px, py = _random(2, 4, 5, seed=3)
    px.requires_grad_(True)
    py.requires_grad_(True)
    boundary = torch.tensor([[0, 0, 4, 5], [0, 0, 2, 3]])
    scores, (px_grad, py_grad) = mutual_information_recursion(px, py, boundary, return_grad=True)
    ax, ay = torch.autograd.grad(scores.sum(), (px, py))
    torch.testing.assert_close(px_grad, ax)
    torch.testing.assert_close(py_grad, ay)
    # every path crosses each anti-diagonal once: occupations on arcs leaving diagonal d sum to 1
    for b, (S, T) in enumerate([(4, 5), (2, 3)]):
        for d in range(S + T):
            mass = sum(px_grad[b, s, d - s] for s in range(S) if 0 <= d - s <= T)
            mass += sum(py_grad[b, s, d - s] for s in range(S + 1) if 0 <= d - s < T)
            assert float(mass) == pytest.approx(1.0, abs=1e-9)
    # arcs outside an utterance's box get no gradient
    assert float(px_grad[1, 2:].abs().sum() + py_grad[1, :, 3:].abs().sum()) == 0.0


def test_float32_matches_float64():
    px, py = _random(2, 6, 9, seed=4)
    got = mutual_information_recursion(px.float(), py.float())
    torch.testing.assert_close(got.double(), mutual_information_recursion(px, py), atol=1e-4, rtol=1e-5)


@pytest.mark.parametrize("shapes, message", [
    (((2, 3, 5), (2, 4, 5)), "expected px of shape"),
    (((2, 3, 5), (2, 3, 4)), "expected px of shape"),
])
def test_shape_errors(shapes, message):
    with pytest.raises(ValueError, match=message):
        mutual_information_recursion(torch.zeros(shapes[0]), torch.zeros(shapes[1]))


def test_boundary_errors():
    px, py = torch.zeros(1, 2, 4), torch.zeros(1, 3, 3)
    with pytest.raises(ValueError, match="begin symbol/frame"):
        mutual_information_recursion(px, py, torch.tensor([[1, 0, 2, 3]]))
    with pytest.raises(ValueError, match="boundary ends"):
        mutual_information_recursion(px, py, torch.tensor([[0, 0, 3, 3]]))
