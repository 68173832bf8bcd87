"""Pruning bounds for the pruned RNN-T loss (Kuang et al. 2022, section 3.2).

From the arc occupation probabilities of the simple loss's lattice, each frame
keeps ``s_range`` consecutive symbol positions: the window that holds the
most probability mass (blank arcs inside the window minus the label arc that
would enter it from below). The window starts are then made to start at 0,
never decrease, and never skip a symbol (advance by at most ``s_range - 1``
per frame), and on an utterance's last frame the window ends on its last
symbol, so at least one complete path survives. :func:`do_rnnt_pruning`
gathers the joiner inputs for the kept positions.
"""
from __future__ import annotations

import warnings

import torch
from torch import Tensor


def _suffix_min(x: Tensor) -> Tensor:
    """y[..., t] = min(x[..., t:]) along the last axis."""
    return torch.flip(torch.cummin(torch.flip(x, dims=(-1,)), dim=-1).values, dims=(-1,))


def constrain_window_starts(s_begin: Tensor, s_range: int) -> Tensor:
    """Smallest-change starts (B, T) that begin at 0, never decrease and advance < s_range."""
    T = s_begin.shape[-1]
    s_begin = _suffix_min(s_begin)
    # advancing by at most (s_range - 1) per frame <=> (s_range - 1) * t - s_begin never decreases
    slack = (s_range - 1) * torch.arange(T, device=s_begin.device) - s_begin
    slack = _suffix_min(slack).clamp(min=0)
    return (s_range - 1) * torch.arange(T, device=s_begin.device) - slack


def get_prune_ranges(px_grad: Tensor, py_grad: Tensor, boundary: Tensor, s_range: int) -> Tensor:
    """Symbol positions kept per frame, (B, T, s_range), from the simple loss's occupations.

    Args:
      px_grad: (B, S, T+1) occupation of label arcs.
      py_grad: (B, S+1, T) occupation of blank arcs.
      boundary: (B, 4) rows ``[0, 0, S_b, T_b]``.
      s_range: symbols kept per frame (the authors' ``prune_range``, default 5).
        Raised to the least value that still lets every label be emitted
        (``(S_b - 1) // T_b + 2``) and capped at ``S + 1`` (no pruning).
    """
    B, S, T1 = px_grad.shape
    T = py_grad.shape[2]
    if T1 != T + 1 or py_grad.shape != (B, S + 1, T):
        raise ValueError(f"expected px_grad (B, S, T+1) and py_grad (B, S+1, T), "
                         f"got {tuple(px_grad.shape)} and {tuple(py_grad.shape)}")
    if s_range < 2:
        raise ValueError(f"s_range (prune_range) must be >= 2 for RNN-T, got {s_range}")
    sym_lens = boundary[:, 2].to(px_grad.device)
    frame_lens = boundary[:, 3].to(px_grad.device)
    need = torch.div(sym_lens - 1, frame_lens.clamp(min=1), rounding_mode="trunc") + 2
    worst = int(need.argmax())
    if s_range < int(need[worst]):
        warnings.warn(f"prune range {s_range} cannot cover {int(sym_lens[worst])} symbols in "
                      f"{int(frame_lens[worst])} frames (batch item {worst}); using {int(need[worst])}",
                      stacklevel=2)
        s_range = int(need[worst])
    s_range = min(s_range, S + 1)

    # mass of each window [s0, s0 + s_range): its blank arcs minus the label arc entering it
    blank_mass = py_grad.unfold(1, s_range, 1).sum(dim=3)  # (B, S + 2 - s_range, T)
    entering = torch.nn.functional.pad(px_grad, (0, 0, 1, 0))[:, : S + 2 - s_range, :T]
    s_begin = torch.argmax(blank_mass - entering, dim=1)  # (B, T)

    # from each utterance's last frame on, the window must end on its last symbol
    t = torch.arange(T, device=px_grad.device).view(1, T)
    last_start = (sym_lens - s_range + 1).clamp(min=0).view(B, 1)
    s_begin = torch.where(t < frame_lens.view(B, 1) - 1, s_begin, last_start)

    s_begin = constrain_window_starts(s_begin, s_range)
    return s_begin.unsqueeze(2) + torch.arange(s_range, device=px_grad.device)


def do_rnnt_pruning(am: Tensor, lm: Tensor, ranges: Tensor) -> tuple[Tensor, Tensor]:
    """Joiner inputs on the pruned slice: am (B, T, C) and lm (B, S+1, C) -> (B, T, s_range, C) each."""
    B, T, R = ranges.shape
    if am.shape[:2] != (B, T) or lm.shape[0] != B:
        raise ValueError(f"ranges {tuple(ranges.shape)} do not match am {tuple(am.shape)} / lm {tuple(lm.shape)}")
    C = lm.shape[2]
    am_pruned = am.unsqueeze(2).expand(B, T, R, am.shape[2])
    lm_pruned = torch.gather(lm, 1, ranges.reshape(B, T * R, 1).expand(B, T * R, C)).view(B, T, R, C)
    return am_pruned, lm_pruned
