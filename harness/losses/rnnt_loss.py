"""RNN-T losses on the mutual-information recursion: full, simple (smoothed) and pruned.

Shapes follow the pruned RNN-T paper and k2 so the two backends are
interchangeable: ``symbols`` (B, S) padded label ids, ``boundary`` (B, 4) rows
``[0, 0, S_b, T_b]``. Every loss turns its inputs into ``px`` (B, S, T+1),
the log-probability of emitting the next label at (s, t), and ``py``
(B, S+1, T), the log-probability of blank at (s, t), then runs
:func:`~harness.losses.mutual_information.mutual_information_recursion`
(or the ``recursion`` given, e.g. the Triton kernels). The loss is the
negated total log-probability. "Regular" RNN-T only: a label keeps the
frame, blank advances it, and the last blank ends the utterance.

- :func:`rnnt_loss` — the full loss from joiner logits (B, T, S+1, V).
- :func:`rnnt_loss_smoothed` — the "simple" loss of an additive joiner
  (``am`` (B, T, V) + ``lm`` (B, S+1, V)), interpolated with LM-only and
  AM-only versions by ``lm_only_scale`` / ``am_only_scale``; with
  ``return_grad`` it also returns the arc occupations used for pruning.
- :func:`rnnt_loss_pruned` — the loss from joiner logits computed only on the
  pruned slice (B, T, s_range, V) given by :mod:`harness.losses.pruning`.
"""
from __future__ import annotations

from typing import Callable, Literal

import torch
from torch import Tensor

from .mutual_information import NEG_INF, mutual_information_recursion

Reduction = Literal["sum", "mean", "none"]
#: a mutual-information recursion: (px, py, boundary, return_grad) -> scores [, (px_grad, py_grad)];
#: the PyTorch one, or the Triton kernels of :mod:`harness.losses.mutual_information_triton`
Recursion = Callable[..., Tensor | tuple[Tensor, tuple[Tensor, Tensor]]]


def default_boundary(B: int, S: int, T: int, device: torch.device | str = "cpu") -> Tensor:
    """Boundary rows ``[0, 0, S, T]`` for every utterance."""
    return torch.tensor([[0, 0, S, T]], dtype=torch.int64, device=device).expand(B, 4).contiguous()


def make_boundary(symbol_lens: Tensor, frame_lens: Tensor) -> Tensor:
    """Boundary rows ``[0, 0, S_b, T_b]`` from per-utterance lengths."""
    B = symbol_lens.shape[0]
    boundary = torch.zeros(B, 4, dtype=torch.int64, device=frame_lens.device)
    boundary[:, 2] = symbol_lens.to(boundary.device)
    boundary[:, 3] = frame_lens.to(boundary.device)
    return boundary


def _append_final_frame(px: Tensor, boundary: Tensor | None) -> Tensor:
    """(B, S, T) -> (B, S, T+1): no label can be emitted at or after frame T_b."""
    B, S, T = px.shape
    px = torch.nn.functional.pad(px, (0, 1), value=NEG_INF)
    if boundary is not None:
        t = torch.arange(T + 1, device=px.device).view(1, 1, T + 1)
        px = px.masked_fill(t >= boundary[:, 3].to(px.device).view(B, 1, 1), NEG_INF)
    return px


def _reduce(neg_scores: Tensor, reduction: Reduction) -> Tensor:
    if reduction == "sum":
        return neg_scores.sum()
    if reduction == "mean":
        return neg_scores.mean()
    if reduction == "none":
        return neg_scores
    raise ValueError(f"reduction must be one of 'sum', 'mean', 'none'; got {reduction!r}")


def _check_symbols(symbols: Tensor, B: int, S: int, V: int) -> None:
    if symbols.shape != (B, S):
        raise ValueError(f"symbols must have shape (B, S) = ({B}, {S}), got {tuple(symbols.shape)}")
    if symbols.dtype != torch.int64:
        raise ValueError(f"symbols must be int64, got {symbols.dtype}")
    if symbols.numel() and (int(symbols.min()) < 0 or int(symbols.max()) >= V):
        raise ValueError(f"symbols must lie in [0, {V}); got min {int(symbols.min())}, "
                         f"max {int(symbols.max())}")


# ----------------------------------------------------------------------------- full loss

def rnnt_logprobs_joint(logits: Tensor, symbols: Tensor, termination_symbol: int,
                        boundary: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """``px`` (B, S, T+1) and ``py`` (B, S+1, T) from full joiner logits (B, T, S+1, V)."""
    if logits.ndim != 4:
        raise ValueError(f"logits must be (B, T, S+1, V), got shape {tuple(logits.shape)}")
    B, T, S1, V = logits.shape
    S = S1 - 1
    _check_symbols(symbols, B, S, V)
    normalizer = torch.logsumexp(logits, dim=3)  # (B, T, S+1)
    index = symbols.view(B, 1, S, 1).expand(B, T, S, 1)
    px = torch.gather(logits[:, :, :S], 3, index).squeeze(3) - normalizer[:, :, :S]
    px = _append_final_frame(px.transpose(1, 2), boundary)
    py = (logits[..., termination_symbol] - normalizer).transpose(1, 2)
    return px, py


def rnnt_loss(logits: Tensor, symbols: Tensor, termination_symbol: int,
              boundary: Tensor | None = None, reduction: Reduction = "sum",
              recursion: Recursion = mutual_information_recursion) -> Tensor:
    """Full (unpruned) RNN-T loss: negated log-probability of the labels."""
    px, py = rnnt_logprobs_joint(logits, symbols, termination_symbol, boundary)
    return _reduce(-recursion(px, py, boundary), reduction)


# ----------------------------------------------------------------------------- simple loss

def rnnt_logprobs_smoothed(lm: Tensor, am: Tensor, symbols: Tensor, termination_symbol: int,
                           lm_only_scale: float = 0.25, am_only_scale: float = 0.0,
                           boundary: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """``px``/``py`` of the additive joiner ``log_softmax(am[t] + lm[s])``, smoothed.

    The result is ``(1 - lm_only_scale - am_only_scale) * combined +
    lm_only_scale * lm_only + am_only_scale * am_only`` in the log domain,
    where ``lm_only`` normalises ``lm`` alone and ``am_only`` pairs ``am``
    with the batch's average LM distribution (a unigram; as in the authors'
    implementation the average runs over all B x (S+1) rows, padding included).
    """
    if lm.ndim != 3 or am.ndim != 3 or lm.shape[0] != am.shape[0] or lm.shape[2] != am.shape[2]:
        raise ValueError(f"expected lm (B, S+1, V) and am (B, T, V), got {tuple(lm.shape)} and {tuple(am.shape)}")
    B, T, V = am.shape
    S = lm.shape[1] - 1
    _check_symbols(symbols, B, S, V)
    tiny = torch.finfo(am.dtype).tiny

    am_max = am.max(dim=2, keepdim=True).values  # (B, T, 1)
    lm_max = lm.max(dim=2, keepdim=True).values  # (B, S+1, 1)
    am_exp = (am - am_max).exp()
    lm_exp = (lm - lm_max).exp()
    # log sum_v exp(lm[s, v] + am[t, v]) for every (s, t): one batched matmul
    normalizer = (torch.matmul(lm_exp, am_exp.transpose(1, 2)) + tiny).log()
    normalizer = normalizer + lm_max + am_max.transpose(1, 2)  # (B, S+1, T)

    am_sym = torch.gather(am.transpose(1, 2), 1, symbols.unsqueeze(2).expand(B, S, T))  # (B, S, T)
    lm_sym = torch.gather(lm[:, :S], 2, symbols.unsqueeze(2))  # (B, S, 1)
    am_blank = am[:, :, termination_symbol].unsqueeze(1)  # (B, 1, T)
    lm_blank = lm[:, :, termination_symbol].unsqueeze(2)  # (B, S+1, 1)

    combined_scale = 1.0 - lm_only_scale - am_only_scale
    px = combined_scale * (am_sym + lm_sym - normalizer[:, :S])
    py = combined_scale * (am_blank + lm_blank - normalizer)

    if lm_only_scale != 0.0:
        lm_lognorm = lm_exp.sum(dim=2, keepdim=True).log() + lm_max  # (B, S+1, 1)
        px = px + lm_only_scale * (lm_sym - lm_lognorm[:, :S])
        py = py + lm_only_scale * (lm_blank - lm_lognorm)

    if am_only_scale != 0.0:
        unigram = (lm_exp / lm_exp.sum(dim=2, keepdim=True)).mean(dim=(0, 1)) + tiny  # (V,)
        am_lognorm = (torch.matmul(am_exp, unigram).log().unsqueeze(2) + am_max).transpose(1, 2)  # (B, 1, T)
        log_unigram = unigram.log()
        px = px + am_only_scale * (am_sym + log_unigram[symbols].unsqueeze(2) - am_lognorm)
        py = py + am_only_scale * (am_blank + log_unigram[termination_symbol] - am_lognorm)

    return _append_final_frame(px, boundary), py


def rnnt_loss_smoothed(lm: Tensor, am: Tensor, symbols: Tensor, termination_symbol: int,
                       lm_only_scale: float = 0.25, am_only_scale: float = 0.0,
                       boundary: Tensor | None = None, reduction: Reduction = "sum",
                       return_grad: bool = False, recursion: Recursion = mutual_information_recursion,
                       ) -> Tensor | tuple[Tensor, tuple[Tensor, Tensor]]:
    """The "simple" RNN-T loss of the additive joiner (see :func:`rnnt_logprobs_smoothed`).

    With ``return_grad`` also returns ``(px_grad, py_grad)``, the occupation
    probabilities of the lattice's arcs, for :func:`~harness.losses.pruning.get_prune_ranges`.
    """
    px, py = rnnt_logprobs_smoothed(lm, am, symbols, termination_symbol,
                                    lm_only_scale, am_only_scale, boundary)
    if return_grad:
        scores, grads = recursion(px, py, boundary, return_grad=True)
        return _reduce(-scores, reduction), grads
    return _reduce(-recursion(px, py, boundary), reduction)


# ----------------------------------------------------------------------------- pruned loss

def rnnt_logprobs_pruned(logits: Tensor, symbols: Tensor, ranges: Tensor, termination_symbol: int,
                         boundary: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """``px``/``py`` from joiner logits (B, T, s_range, V) on the pruned slice.

    ``ranges[b, t, k]`` is the symbol position (0..S) that ``logits[b, t, k]``
    belongs to; every arc outside the slice gets -inf.
    """
    if logits.ndim != 4:
        raise ValueError(f"logits must be (B, T, s_range, V), got shape {tuple(logits.shape)}")
    B, T, R, V = logits.shape
    if ranges.shape != (B, T, R):
        raise ValueError(f"ranges must have shape {(B, T, R)}, got {tuple(ranges.shape)}")
    S = symbols.shape[1]
    _check_symbols(symbols, B, S, V)
    normalizer = torch.logsumexp(logits, dim=3)  # (B, T, R)
    # the label emitted at position s is symbols[s]; position S emits nothing
    # (it only exists for blank), so pad it with the termination symbol
    padded = torch.nn.functional.pad(symbols, (0, 1), value=termination_symbol)
    label = torch.gather(padded, 1, ranges.reshape(B, T * R)).view(B, T, R)
    px_slice = torch.gather(logits, 3, label.unsqueeze(3)).squeeze(3) - normalizer
    py_slice = logits[..., termination_symbol] - normalizer
    lattice = logits.new_full((B, T, S + 1), NEG_INF)
    px = lattice.scatter(2, ranges, px_slice)[:, :, :S].transpose(1, 2)  # (B, S, T)
    py = lattice.scatter(2, ranges, py_slice).transpose(1, 2)  # (B, S+1, T)
    return _append_final_frame(px, boundary), py


def rnnt_loss_pruned(logits: Tensor, symbols: Tensor, ranges: Tensor, termination_symbol: int,
                     boundary: Tensor | None = None, reduction: Reduction = "sum",
                     recursion: Recursion = mutual_information_recursion) -> Tensor:
    """RNN-T loss restricted to the pruned slice of the lattice."""
    px, py = rnnt_logprobs_pruned(logits, symbols, ranges, termination_symbol, boundary)
    return _reduce(-recursion(px, py, boundary), reduction)
