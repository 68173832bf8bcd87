"""Full, simple and pruned RNN-T losses: against an independent per-utterance DP
in float64, against each other, gradcheck, and against k2 when it imports."""
from __future__ import annotations

import math

import pytest
import torch

from harness.losses import (get_prune_ranges, k2_available, make_boundary, rnnt_loss,
                            rnnt_loss_pruned, rnnt_loss_smoothed)
from harness.losses.rnnt_backend import import_k2
from harness.losses.pruning import constrain_window_starts

BLANK = 0


def reference_rnnt_loss(logits: torch.Tensor, labels: list[int], T: int) -> float:
    """Textbook RNN-T forward variable for one utterance (Graves 2012), float64.

    alpha[t][u]: log-prob of having emitted labels[:u] by frame t; a blank at
    (t, u) moves to t+1, a label at (t, u) moves to u+1; the path ends with a
    blank on the last frame.
    """
    lp = torch.log_softmax(logits.double(), dim=-1)
    U = len(labels)
    alpha = [[-math.inf] * (U + 1) for _ in range(T)]
    for t in range(T):
        for u in range(U + 1):
            if t == 0 and u == 0:
                alpha[0][0] = 0.0
                continue
            terms = []
            if t > 0:
                terms.append(alpha[t - 1][u] + float(lp[t - 1, u, BLANK]))
            if u > 0:
                terms.append(alpha[t][u - 1] + float(lp[t, u - 1, labels[u - 1]]))
            m = max(terms)
            alpha[t][u] = m + math.log(sum(math.exp(x - m) for x in terms))
    return -(alpha[T - 1][U] + float(lp[T - 1, U, BLANK]))


def _batch(B=4, T=9, S=5, V=7, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    frame_lens = torch.tensor([9, 6, 3, 9][:B])
    sym_lens = torch.tensor([5, 2, 4, 0][:B])  # includes S_b > T_b and an empty label sequence
    symbols = torch.randint(1, V, (B, S), generator=g)
    for b in range(B):
        symbols[b, sym_lens[b]:] = BLANK
    logits = torch.randn(B, T, S + 1, V, generator=g, dtype=dtype)
    return logits, symbols, make_boundary(sym_lens, frame_lens), sym_lens, frame_lens


def test_full_loss_equals_independent_dp_float64():
    logits, symbols, boundary, sym_lens, frame_lens = _batch()
    got = rnnt_loss(logits, symbols, BLANK, boundary, reduction="none")
    for b in range(logits.shape[0]):
        S_b, T_b = int(sym_lens[b]), int(frame_lens[b])
        ref = reference_rnnt_loss(logits[b, :T_b, : S_b + 1], symbols[b, :S_b].tolist(), T_b)
        assert abs(got[b].item() - ref) < 1e-6
    assert rnnt_loss(logits, symbols, BLANK, boundary).item() == pytest.approx(got.sum().item())


def test_full_loss_gradcheck():
    logits, symbols, boundary, _, _ = _batch(B=3, T=4, S=3, V=4, seed=1)
    boundary = make_boundary(torch.tensor([3, 1, 2]), torch.tensor([4, 2, 3]))
    symbols = symbols[:, :3].clamp(max=3)
    logits = logits[:, :4, :4, :4].clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x: rnnt_loss(x, symbols, BLANK, boundary, "none"), (logits,))


def _simple_and_ranges(logits, symbols, boundary, s_range, seed=5):
    B, T, S1, V = logits.shape
    g = torch.Generator().manual_seed(seed)
    lm = torch.randn(B, S1, V, generator=g, dtype=logits.dtype)
    am = torch.randn(B, T, V, generator=g, dtype=logits.dtype)
    _, (px_grad, py_grad) = rnnt_loss_smoothed(lm, am, symbols, BLANK, 0.25, 0.0, boundary, return_grad=True)
    return get_prune_ranges(px_grad, py_grad, boundary, s_range)


def _slice(logits, ranges):
    B, T, R = ranges.shape
    return torch.gather(logits, 2, ranges.unsqueeze(3).expand(B, T, R, logits.shape[3]))


def test_pruned_equals_full_when_range_covers_every_label():
    logits, symbols, boundary, _, _ = _batch(seed=2)
    logits.requires_grad_(True)
    S = symbols.shape[1]
    ranges = _simple_and_ranges(logits.detach(), symbols, boundary, s_range=S + 1)
    assert torch.equal(ranges, torch.arange(S + 1).expand_as(ranges))
    pruned = rnnt_loss_pruned(_slice(logits, ranges), symbols, ranges, BLANK, boundary, "none")
    full = rnnt_loss(logits, symbols, BLANK, boundary, "none")
    torch.testing.assert_close(pruned, full, atol=1e-10, rtol=0)
    g_pruned, = torch.autograd.grad(pruned.sum(), logits)
    g_full, = torch.autograd.grad(full.sum(), logits)
    torch.testing.assert_close(g_pruned, g_full)


def test_pruned_loss_bounds_full_loss_from_above():
    logits, symbols, boundary, _, _ = _batch(seed=3)
    ranges = _simple_and_ranges(logits, symbols, boundary, s_range=3)
    pruned = rnnt_loss_pruned(_slice(logits, ranges), symbols, ranges, BLANK, boundary, "none")
    full = rnnt_loss(logits, symbols, BLANK, boundary, "none")
    assert torch.isfinite(pruned).all()
    assert (pruned >= full - 1e-9).all()


def test_pruned_loss_gradcheck():
    logits, symbols, boundary, _, _ = _batch(B=2, T=5, S=3, V=4, seed=4)
    symbols = symbols.clamp(max=3)
    boundary = make_boundary(torch.tensor([3, 2]), torch.tensor([5, 3]))
    ranges = _simple_and_ranges(logits[:, :, :, :4], symbols, boundary, s_range=2)
    sliced = _slice(logits[:, :, :, :4], ranges).clone().requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda x: rnnt_loss_pruned(x, symbols, ranges, BLANK, boundary, "none"), (sliced,))


def test_simple_loss_without_smoothing_is_full_loss_of_additive_joiner():
    _, symbols, boundary, _, _ = _batch(seed=6)
    g = torch.Generator().manual_seed(7)
    lm = torch.randn(4, 6, 7, generator=g, dtype=torch.float64)
    am = torch.randn(4, 9, 7, generator=g, dtype=torch.float64)
    simple = rnnt_loss_smoothed(lm, am, symbols, BLANK, 0.0, 0.0, boundary, "none")
    full = rnnt_loss(am.unsqueeze(2) + lm.unsqueeze(1), symbols, BLANK, boundary, "none")
    torch.testing.assert_close(simple, full)


@pytest.mark.parametrize("lm_scale, am_scale", [(0.25, 0.0), (0.1, 0.2)])
def test_smoothed_loss_is_shift_invariant_and_differentiable(lm_scale, am_scale):
    _, symbols, boundary, _, _ = _batch(seed=8)
    g = torch.Generator().manual_seed(9)
    lm = torch.randn(4, 6, 7, generator=g, dtype=torch.float64, requires_grad=True)
    am = torch.randn(4, 9, 7, generator=g, dtype=torch.float64, requires_grad=True)
    base = rnnt_loss_smoothed(lm, am, symbols, BLANK, lm_scale, am_scale, boundary, "none")
    shifted = rnnt_loss_smoothed(lm + torch.randn(4, 6, 1, dtype=torch.float64) * 3,
                                 am + torch.randn(4, 9, 1, dtype=torch.float64) * 3,
                                 symbols, BLANK, lm_scale, am_scale, boundary, "none")
    torch.testing.assert_close(base, shifted)
    # gradcheck on a small problem: 2 utterances, 3 labels, 4 frames, 4 classes
    small_lm = torch.randn(2, 4, 4, generator=g, dtype=torch.float64, requires_grad=True)
    small_am = torch.randn(2, 4, 4, generator=g, dtype=torch.float64, requires_grad=True)
    small_sym = torch.tensor([[1, 2, 3], [3, 1, 0]])
    small_bd = make_boundary(torch.tensor([3, 2]), torch.tensor([4, 3]))
    assert torch.autograd.gradcheck(
        lambda a, b: rnnt_loss_smoothed(a, b, small_sym, BLANK, lm_scale, am_scale, small_bd, "none"),
        (small_lm, small_am))


def test_prune_ranges_are_valid_windows():
    logits, symbols, boundary, sym_lens, frame_lens = _batch(seed=10)
    s_range = 3
    ranges = _simple_and_ranges(logits, symbols, boundary, s_range)
    start = ranges[:, :, 0]
    assert (start[:, 0] == 0).all()
    assert (start[:, 1:] >= start[:, :-1]).all()
    assert (start[:, 1:] - start[:, :-1] < s_range).all()
    assert int(ranges.max()) <= symbols.shape[1]
    for b in range(len(sym_lens)):  # the last frame's window reaches the last symbol
        assert int(ranges[b, int(frame_lens[b]) - 1, -1]) >= int(sym_lens[b])


def test_prune_range_is_raised_when_too_small_for_the_labels():
    logits, symbols, boundary, _, _ = _batch(seed=11)
    boundary = boundary.clone()
    boundary[2, 3] = 1  # 4 labels in a single frame need a window of 5
    with pytest.warns(UserWarning, match="using 5"):
        ranges = _simple_and_ranges(logits, symbols, boundary, s_range=2)
    assert ranges.shape[2] == 5


def test_constrain_window_starts():
    starts = torch.tensor([[3, 1, 4, 9, 2, 8, 9]])
    got = constrain_window_starts(starts, s_range=3)
    # non-decreasing, from 0, and advancing at most s_range - 1 = 2 per frame
    assert got.tolist() == [[0, 1, 2, 4, 6, 8, 9]]


def test_symbol_ids_out_of_range_are_rejected():
    logits, symbols, boundary, _, _ = _batch()
    with pytest.raises(ValueError, match=r"symbols must lie in \[0, 7\)"):
        rnnt_loss(logits, symbols + 7, BLANK, boundary)


@pytest.mark.skipif(not k2_available(), reason="k2 does not import here: comparison with k2 skipped")
def test_matches_k2_within_1e_4():
    k2 = import_k2()
    logits, symbols, boundary, _, _ = _batch(dtype=torch.float32, seed=12)
    g = torch.Generator().manual_seed(13)
    lm = torch.randn(4, 6, 7, generator=g)
    am = torch.randn(4, 9, 7, generator=g)
    ours, (pxg, pyg) = rnnt_loss_smoothed(lm, am, symbols, BLANK, 0.25, 0.0, boundary, "none", True)
    theirs, (kpxg, kpyg) = k2.rnnt_loss_smoothed(
        lm=lm, am=am, symbols=symbols, termination_symbol=BLANK, lm_only_scale=0.25,
        am_only_scale=0.0, boundary=boundary, reduction="none", return_grad=True)
    torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=0)
    ranges = get_prune_ranges(pxg, pyg, boundary, 3)
    assert torch.equal(ranges, k2.get_rnnt_prune_ranges(kpxg, kpyg, boundary, 3))
    sliced = _slice(logits, ranges)
    torch.testing.assert_close(
        rnnt_loss_pruned(sliced, symbols, ranges, BLANK, boundary, "none"),
        k2.rnnt_loss_pruned(logits=sliced, symbols=symbols, ranges=ranges, termination_symbol=BLANK,
                            boundary=boundary, reduction="none"), atol=1e-4, rtol=0)
    torch.testing.assert_close(
        rnnt_loss(logits, symbols, BLANK, boundary, "none"),
        k2.rnnt_loss(logits=logits, symbols=symbols, termination_symbol=BLANK, boundary=boundary,
                     reduction="none"), atol=1e-4, rtol=0)
