"""The mutual-information recursion over the (S, T) lattice, in plain PyTorch.

For each utterance ``b`` with ``S_b`` symbols and ``T_b`` frames the score is

    p[0, 0] = 0
    p[s, t] = logaddexp(p[s-1, t] + px[s-1, t],  p[s, t-1] + py[s, t-1])

(terms with a negative index are -inf) and the result is ``p[S_b, T_b]``.
``px`` has shape (B, S, T+1): "emit the next symbol, stay on the frame";
``py`` has shape (B, S+1, T): "emit the termination symbol (blank), go to the
next frame". This is the form the pruned RNN-T paper (Kuang et al. 2022) and
k2 use; :mod:`harness.losses.rnnt_loss` builds ``px``/``py`` from joiner
outputs.

Every cell on one anti-diagonal ``s + t = d`` depends only on the previous
anti-diagonal, so the forward pass is one vectorised step per anti-diagonal
(``S + T + 1`` steps, each over the whole batch and all ``s``). The backward
pass walks the anti-diagonals in reverse, splitting each cell's gradient
between its two incoming arcs in proportion to their posterior weight; the
result is the arc occupation probabilities, which are also what the pruning
step needs (``return_grad=True``). :mod:`harness.losses.mutual_information_triton`
runs the same recursion as two Triton kernels through the same autograd
function (:func:`run_lattice`).
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

NEG_INF = float("-inf")


def _check(px: Tensor, py: Tensor, boundary: Tensor | None) -> Tensor:
    """Validate shapes and return the (B, 2) tensor of (S_b, T_b)."""
    if px.ndim != 3 or py.ndim != 3:
        raise ValueError(f"px and py must be 3-D, got px {tuple(px.shape)} and py {tuple(py.shape)}")
    B, S, T1 = px.shape
    T = py.shape[2]
    if T1 != T + 1 or py.shape[:2] != (B, S + 1):
        raise ValueError(
            f"expected px of shape (B, S, T+1) and py of shape (B, S+1, T); "
            f"got px {tuple(px.shape)} and py {tuple(py.shape)}")
    if px.dtype != py.dtype or not px.is_floating_point():
        raise ValueError(f"px and py must share one floating dtype, got {px.dtype} and {py.dtype}")
    if boundary is None:
        return torch.tensor([[S, T]], device=px.device).expand(B, 2)
    if boundary.shape != (B, 4):
        raise ValueError(f"boundary must have shape (B, 4) = ({B}, 4), got {tuple(boundary.shape)}")
    boundary = boundary.to(device=px.device, dtype=torch.int64)
    ends = boundary[:, 2:]
    bad = ((boundary[:, :2] != 0).any(dim=1) | (ends[:, 0] < 0) | (ends[:, 0] > S)
           | (ends[:, 1] < 0) | (ends[:, 1] > T))
    if bool(bad.any()):
        b = int(bad.nonzero()[0, 0])
        row = boundary[b].tolist()
        if row[:2] != [0, 0]:
            raise ValueError(f"utterance {b}: boundary {row}: boundary[:, 0] and boundary[:, 1] "
                             "(begin symbol/frame) must be 0")
        raise ValueError(f"utterance {b}: boundary {row}: boundary ends must satisfy 0 <= S_b <= {S} "
                         f"and 0 <= T_b <= {T} (the lengths of px (B, S, T+1) and py (B, S+1, T))")
    return ends


def checked_inputs(px: Tensor, py: Tensor, boundary: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
    """Validated ``(px, py, ends)``: float16/bfloat16 are upcast to float32 (a documented
    conversion: a half-precision sum over hundreds of diagonals would lose the loss)."""
    ends = _check(px, py, boundary)
    if px.dtype in (torch.float16, torch.bfloat16):
        px, py = px.float(), py.float()
    return px, py, ends


def _mask_outside(px: Tensor, py: Tensor, ends: Tensor) -> tuple[Tensor, Tensor]:
    """Set arcs that leave an utterance's (S_b, T_b) box to -inf."""
    B, S, T1 = px.shape
    s_b = ends[:, 0].view(B, 1, 1)
    t_b = ends[:, 1].view(B, 1, 1)
    s_idx = torch.arange(S + 1, device=px.device).view(1, S + 1, 1)
    t_idx = torch.arange(T1, device=px.device).view(1, 1, T1)
    px_ok = (s_idx[:, :S] < s_b) & (t_idx <= t_b)
    py_ok = (s_idx <= s_b) & (t_idx[:, :, : T1 - 1] < t_b)
    return px.masked_fill(~px_ok, NEG_INF), py.masked_fill(~py_ok, NEG_INF)


def _skew_index(S: int, T: int, device: torch.device) -> tuple[Tensor, Tensor]:
    """Index (S+1, D) of t = d - s, clamped, and its validity mask (D = S+T+1)."""
    D = S + T + 1
    d = torch.arange(D, device=device).view(1, D)
    s = torch.arange(S + 1, device=device).view(S + 1, 1)
    t = d - s
    valid = (t >= 0) & (t <= T)
    return t.clamp(0, T), valid


def _to_diagonals(x: Tensor, t_shift: int, S: int, T: int) -> Tensor:
    """(B, S+1, T+1) lattice tensor -> (B, D, S+1) with [b, d, s] = x[b, s, d - s - t_shift]."""
    B = x.shape[0]
    t_idx, valid = _skew_index(S, T, x.device)
    t_src = t_idx - t_shift
    valid = valid & (t_src >= 0)
    out = torch.gather(x, 2, t_src.clamp(min=0).unsqueeze(0).expand(B, -1, -1))
    out = out.masked_fill(~valid.unsqueeze(0), NEG_INF)
    return out.transpose(1, 2).contiguous()


def _from_diagonals(y: Tensor, t_shift: int, S: int, T: int) -> Tensor:
    """Inverse of :func:`_to_diagonals` for gradients: (B, D, S+1) -> (B, S+1, T+1)."""
    B = y.shape[0]
    s = torch.arange(S + 1, device=y.device).view(S + 1, 1)
    t = torch.arange(T + 1, device=y.device).view(1, T + 1)
    d = (s + t + t_shift).clamp(max=S + T)
    return torch.gather(y.transpose(1, 2), 2, d.unsqueeze(0).expand(B, -1, -1))


def _forward_lattice(pxd: Tensor, pyd: Tensor) -> Tensor:
    """Scores of every cell per anti-diagonal, (B, D, S+2); column 0 is s = -1 (always -inf).

    Keeping that extra column makes "the cell below" a view, so each
    anti-diagonal costs three kernels (two adds and a logaddexp).
    """
    B, D, S1 = pxd.shape
    p = pxd.new_full((B, D, S1 + 1), NEG_INF)
    p[:, 0, 1] = 0.0
    for d in range(1, D):
        prev = p[:, d - 1]
        torch.logaddexp(prev[:, :-1] + pxd[:, d], prev[:, 1:] + pyd[:, d], out=p[:, d, 1:])
    return p


def _backward_lattice(p: Tensor, pxd: Tensor, ends: Tensor, ans_grad: Tensor) -> tuple[Tensor, Tensor]:
    """Arc occupations (times ans_grad) on the diagonals: (gx, gy), each (B, D, S+1).

    Walking the anti-diagonals backwards, each cell's gradient is split
    between its incoming label arc (weight exp(p_below + px - p_cell)) and its
    blank arc (the rest), and passed on to the two predecessor cells. Each
    utterance's gradient enters at its own end cell (S_b, T_b).
    """
    B, D, S2 = p.shape
    S1 = S2 - 1
    inject = p.new_zeros(B, D, S1)
    inject[torch.arange(B, device=p.device), ends[:, 0] + ends[:, 1], ends[:, 0]] = ans_grad
    gx = p.new_zeros(B, D, S1 + 1)  # the last column stays 0: the shift below reads it
    gy = p.new_zeros(B, D, S1)
    g = inject[:, D - 1].clone()
    w = p.new_empty(B, S1)
    for d in range(D - 1, 0, -1):
        torch.add(p[:, d - 1, :-1], pxd[:, d], out=w)
        w.sub_(p[:, d, 1:]).exp_().nan_to_num_(nan=0.0, posinf=0.0)  # unreachable cells: 0
        torch.mul(w, g, out=gx[:, d, :S1])
        torch.sub(g, gx[:, d, :S1], out=gy[:, d])
        g = gy[:, d] + gx[:, d, 1:]
        g.add_(inject[:, d - 1])
    return gx[:, :, :S1], gy


#: computes (scores, px_grad, py_grad) from (px, py, ends, want_grad); grads None unless want_grad
Lattice = Callable[[Tensor, Tensor, Tensor, bool], tuple[Tensor, Tensor | None, Tensor | None]]


def _torch_lattice(px: Tensor, py: Tensor, ends: Tensor,
                   want_grad: bool) -> tuple[Tensor, Tensor | None, Tensor | None]:
    B, S, T1 = px.shape
    T = T1 - 1
    zero_row = px.new_full((B, 1, T1), NEG_INF)
    pxd = _to_diagonals(torch.cat([zero_row, px], dim=1), 0, S, T)
    py_pad = torch.nn.functional.pad(py, (0, 1), value=NEG_INF)
    pyd = _to_diagonals(py_pad, 1, S, T)
    p = _forward_lattice(pxd, pyd)
    end_diag = ends[:, 0] + ends[:, 1]
    scores = p[torch.arange(B, device=p.device), end_diag, ends[:, 0] + 1]
    if not want_grad:
        return scores, None, None
    gx, gy = _backward_lattice(p, pxd, ends, torch.ones_like(scores))
    return scores, _from_diagonals(gx, 0, S, T)[:, 1:], _from_diagonals(gy, 1, S, T)[:, :, :T]


class _MutualInformation(torch.autograd.Function):
    """Scores from a lattice implementation; the backward scales its arc occupations by the grad."""

    @staticmethod
    def forward(ctx, px: Tensor, py: Tensor, ends: Tensor,  # type: ignore[override]
                want_grad: bool, lattice: Lattice) -> tuple[Tensor, Tensor, Tensor]:
        scores, px_grad, py_grad = lattice(px, py, ends, want_grad)
        if px_grad is None or py_grad is None:
            empty = px.new_empty(0)
            ctx.mark_non_differentiable(empty)
            return scores, empty, empty
        ctx.save_for_backward(px_grad, py_grad)
        ctx.mark_non_differentiable(px_grad, py_grad)
        return scores, px_grad, py_grad

    @staticmethod
    def backward(ctx, ans_grad: Tensor, _g1: Tensor, _g2: Tensor):  # type: ignore[override]
        px_grad, py_grad = ctx.saved_tensors
        scale = ans_grad.view(-1, 1, 1)
        return px_grad * scale, py_grad * scale, None, None, None


def run_lattice(lattice: Lattice, px: Tensor, py: Tensor, ends: Tensor,
                return_grad: bool) -> Tensor | tuple[Tensor, tuple[Tensor, Tensor]]:
    """Scores (and with ``return_grad`` the occupations) of checked inputs through ``lattice``."""
    want_grad = return_grad or (torch.is_grad_enabled() and (px.requires_grad or py.requires_grad))
    scores, px_grad, py_grad = _MutualInformation.apply(px, py, ends, want_grad, lattice)
    if return_grad:
        return scores, (px_grad, py_grad)
    return scores


def mutual_information_recursion(
    px: Tensor, py: Tensor, boundary: Tensor | None = None, return_grad: bool = False,
) -> Tensor | tuple[Tensor, tuple[Tensor, Tensor]]:
    """Total log-score ``p[S_b, T_b]`` of each utterance, shape (B,).

    Args:
      px: (B, S, T+1) log-scores of symbol arcs.
      py: (B, S+1, T) log-scores of termination (blank) arcs.
      boundary: optional (B, 4) int64 rows ``[0, 0, S_b, T_b]`` (k2's layout);
        default ``[0, 0, S, T]``. Arcs outside an utterance's box are ignored.
      return_grad: also return ``(px_grad, py_grad)``, the derivatives of the
        scores' sum with respect to ``px`` and ``py`` (arc occupation
        probabilities), used to choose pruning ranges.

    Differentiable in ``px`` and ``py`` (first order) through a custom backward.
    float16/bfloat16 inputs are computed in float32 (float32 scores; their
    gradients flow back through the cast). Raises ValueError naming the
    utterance for a boundary outside the tensors.
    """
    px, py, ends = checked_inputs(px, py, boundary)
    return run_lattice(_torch_lattice, *_mask_outside(px, py, ends), ends, return_grad)
