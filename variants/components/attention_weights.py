"""Multi-Head Attention Weights, MHAW (paper section 3.2).

The first half of multi-head self-attention: it computes the attention weights
only, so that one MHAW can feed NLA and two SA modules in a Zipformer block.
Scores are query-key dot products plus a relative-position term: each head also
projects its input to a small "position query" (``pos_head_dim``) that is
matched against the projected relative positional encoding, as in the authors'
implementation. There is no 1/sqrt(d) factor: the query/key projection starts
scaled by ``query_head_dim ** -0.25`` and its scale is learnt (ScaledAdam).
Padded keys are masked out.
"""
from __future__ import annotations

import random

import torch
from torch import nn

from .. import fast_paths
from .balancer import make_balancer
from .lean_autograd import autocast_off, cast
from .scaled_linear import scaled_linear
from .scheduled_float import FloatLike, ScheduledFloat, fill_decision
from .whitener import make_whitener


class PenalizeAbsValuesGt(torch.autograd.Function):
    """Identity; backward adds the gradient of penalty * relu(|x| - limit).

    Keeps only sign(x) where |x| > limit (one byte per element, 0 elsewhere).
    """

    @staticmethod
    def forward(ctx, x, limit, penalty):  # type: ignore[override]
        ctx.save_for_backward((x.sign() * (x.abs() > limit)).to(torch.int8))
        ctx.penalty = penalty
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        (sign_over,) = ctx.saved_tensors
        return grad + ctx.penalty * sign_over.to(grad.dtype), None, None


class _PenalizeAbsValuesGtDrawn(torch.autograd.Function):
    """PenalizeAbsValuesGt with the penalty as a 0-dim tensor (0 on a step that does not act)."""

    @staticmethod
    def forward(ctx, x, limit, penalty):  # type: ignore[override]
        ctx.save_for_backward((x.sign() * (x.abs() > limit)).to(torch.int8), penalty)
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        sign_over, penalty = ctx.saved_tensors
        return grad + penalty.to(grad.dtype) * sign_over.to(grad.dtype), None, None


class _AttentionSoftmax(torch.autograd.Function):
    """softmax in float32, its output kept (and returned) once, in the compute dtype.

    Under CUDA autocast a plain softmax returns float32 weights, which autograd
    keeps, and each matmul that reads them keeps a second, low-precision copy.
    Here the output is rounded to autocast's dtype once (the value those matmuls
    would use) and that copy alone is kept; the backward pass computes in
    float32. Without autocast it equals ``x.softmax(dim)``.

    ``mask`` (True at padded keys) sets those scores to -1000 first, as a
    ``masked_fill`` before it would, without that op's own backward pass (a
    full-size pass and a node): there the output is exactly 0, so softmax's
    backward gives them 0 too (the masked fill's gradient), unless a row's
    largest unmasked score is below about -900.
    """

    @staticmethod
    def forward(ctx, x, dim, mask):  # type: ignore[override]
        t = x.device.type
        dtype = torch.get_autocast_dtype(t) if torch.is_autocast_enabled(t) else x.dtype
        with autocast_off(t):
            x32 = x.float()
            if mask is not None:
                x32 = x32.masked_fill(mask, -1000.0)
            y = cast(x32.softmax(dim=dim), dtype)
        ctx.save_for_backward(y)
        ctx.dim, ctx.x_dtype = dim, x.dtype
        return y

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        (y,) = ctx.saved_tensors
        with autocast_off(grad.device.type):
            g = torch._softmax_backward_data(grad.float(), y.float(), ctx.dim, torch.float32)
        return cast(g, ctx.x_dtype), None, None


def attention_softmax(x: torch.Tensor, dim: int = -1, mask: torch.Tensor | None = None) -> torch.Tensor:
    """``x.masked_fill(mask, -1000).softmax(dim)`` (no mask: ``x.softmax(dim)``), keeping one
    compute-dtype copy for backward when a gradient is needed."""
    if torch.is_grad_enabled() and x.requires_grad:
        return _AttentionSoftmax.apply(x, dim, mask)
    if mask is not None:
        x = x.masked_fill(mask, -1000.0)
    return x.softmax(dim=dim)


def is_tracing() -> bool:
    """True while ``torch.jit.trace`` (the ONNX exporter's tracer) or ``torch.export`` records."""
    return torch.jit.is_tracing() or torch.compiler.is_exporting()


def gather_relative(pos_scores: torch.Tensor) -> torch.Tensor:
    """:func:`relative_to_absolute` by index (the same values): what an exported graph holds,
    since ``as_strided`` bakes the traced batch and length into its strides."""
    t = pos_scores.shape[-2]
    rows = torch.arange(t, device=pos_scores.device)
    idx = (t - 1) - rows.unsqueeze(1) + rows.unsqueeze(0)            # (T, T): column of offset j - i
    return pos_scores.gather(-1, idx.expand(pos_scores.shape[:-1] + (t,)))


def _no_grad(*tensors: torch.Tensor) -> bool:
    """Whether autograd records nothing for ops on ``tensors`` (in-place is then safe)."""
    return not torch.is_grad_enabled() or not any(t.requires_grad for t in tensors)


def relative_to_absolute(pos_scores: torch.Tensor) -> torch.Tensor:
    """(..., T, 2T-1) scores per relative offset -> (..., T, T) with [i, j] = offset j - i."""
    *lead, t, n = pos_scores.shape
    if is_tracing() or torch.compiler.is_compiling():     # (compiled: no as_strided offsets)
        return gather_relative(pos_scores)
    if n != 2 * t - 1:
        raise ValueError(f"relative scores need 2T-1 = {2 * t - 1} offsets, got {n}")
    pos_scores = pos_scores.contiguous()
    s = pos_scores.stride()
    return pos_scores.as_strided(
        (*lead, t, t), (*s[:-2], s[-2] - s[-1], s[-1]),
        storage_offset=pos_scores.storage_offset() + s[-1] * (t - 1))


def add_relative_in_blocks(scores: torch.Tensor, p: torch.Tensor, pos: torch.Tensor,
                           rows: int = 64) -> torch.Tensor:
    """``scores += relative_to_absolute(p @ pos)`` in place, a block of ``rows`` query rows at
    a time (no gradient; the CPU inference path).

    ``scores`` (h, B, T, T), ``p`` (h, B, T, pd), ``pos`` (h, 1 or B, pd, 2T-1). Rows i0..i1
    need only the offsets T-i1 .. 2T-2-i0 (T + rows - 1 of them), so each block computes
    about half the products of the whole (T, 2T-1) matrix, and the block stays in cache
    while it is added: the whole matrix, twice the size of the scores, is never written.
    """
    h, b, t, _ = scores.shape
    pd = p.shape[-1]
    s3 = scores.view(h * b, t, t)
    p3 = p.reshape(h * b, t, pd)
    pos3 = pos.expand(h, b, pd, 2 * t - 1).reshape(h * b, pd, 2 * t - 1)
    for i0 in range(0, t, rows):
        i1 = min(t, i0 + rows)
        r = i1 - i0
        blk = torch.bmm(p3[:, i0:i1], pos3[:, :, t - i1:2 * t - 1 - i0])   # (hB, r, T + r - 1)
        # row ii, key j: offset (T - 1 - i) + j, column (r - 1) - ii + j of the block
        st = blk.stride()
        rel = blk.as_strided((h * b, r, t), (st[0], st[1] - st[2], st[2]),
                             storage_offset=blk.storage_offset() + (r - 1) * st[2])
        s3[:, i0:i1].add_(rel)
    return scores


def whitening_limit_schedule(start: float, ratio: float = 2.0) -> ScheduledFloat:
    """The authors' Whitener limit: ``start`` at first, ``ratio * start`` from 20000 batches."""
    return ScheduledFloat((0.0, start), (20000.0, ratio * start), default=start)


class MultiHeadAttentionWeights(nn.Module):
    """x (B, T, D), pos_emb (1, 2T-1, pos_dim) -> weights (heads, B, T, T)."""

    def __init__(self, embed_dim: int, pos_dim: int, num_heads: int, query_head_dim: int,
                 pos_head_dim: int, *, balancer: bool = True, whitener: bool = True,
                 pos_emb_skip_rate: FloatLike | None = None):
        super().__init__()
        self.embed_dim = embed_dim
        self.num_heads = num_heads
        self.query_head_dim = query_head_dim
        self.pos_head_dim = pos_head_dim
        in_dim = (2 * query_head_dim + pos_head_dim) * num_heads
        self.in_proj = scaled_linear(embed_dim, in_dim, bias=True,
                                     initial_scale=query_head_dim ** -0.25)
        self.linear_pos = scaled_linear(pos_dim, num_heads * pos_head_dim, bias=False,
                                        initial_scale=0.05)
        # keys: rarely-applied balancer against a drifting mean (the scores are
        # invariant to it) and a per-head whitener
        self.balance_keys = make_balancer(query_head_dim * num_heads, enabled=balancer, channel_dim=-1,
                                          min_positive=0.4, max_positive=0.6, min_abs=0.0,
                                          max_abs=100.0, prob=0.025)
        self.whiten_keys = make_whitener(enabled=whitener, num_groups=num_heads,
                                         whitening_limit=whitening_limit_schedule(3.0),
                                         prob=(0.025, 0.25), grad_scale=0.025)
        self.pos_emb_skip_rate = (ScheduledFloat((0.0, 0.5), (4000.0, 0.0))
                                  if pos_emb_skip_rate is None else pos_emb_skip_rate)

    #: the step's two draws from :meth:`decide` (drawn before a compiled region: scheduled_float.py)
    predrawn = False
    _decision: torch.Tensor | None = None

    def decide(self, device: torch.device) -> None:
        """[keep the positional scores, penalise large scores] as 0/1: the forward's two draws."""
        keep_pos = random.random() >= float(self.pos_emb_skip_rate)
        self._decision = fill_decision(self._decision, [float(keep_pos), float(random.random() < 0.1)],
                                       device)

    def forward(self, x: torch.Tensor, pos_emb: torch.Tensor,
                key_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        b, t, d = x.shape
        if d != self.embed_dim:
            raise ValueError(f"MHAW expected embed dim {self.embed_dim}, got input {tuple(x.shape)}")
        h, qd, pd = self.num_heads, self.query_head_dim, self.pos_head_dim
        # split, not sliced: its backward writes the three gradients into one tensor, where
        # each slice's would allocate a zero tensor of the whole projection, to be summed
        q, k, p = self.in_proj(x).split((h * qd, h * qd, h * pd), dim=-1)
        k = self.whiten_keys(self.balance_keys(k))
        q = q.reshape(b, t, h, qd).permute(2, 0, 1, 3)        # (h, B, T, qd)
        k = k.reshape(b, t, h, qd).permute(2, 0, 3, 1)        # (h, B, qd, T)
        scores = torch.matmul(q, k)                           # (h, B, T, T)
        drawn = self.predrawn and self.training
        if drawn or not self.training or random.random() >= float(self.pos_emb_skip_rate):
            if pos_emb.shape[-2] != 2 * t - 1:
                raise ValueError(f"pos_emb must have 2T-1 = {2 * t - 1} positions, got {tuple(pos_emb.shape)}")
            pos = self.linear_pos(pos_emb)                    # (1, 2T-1, h*pd)
            pos = pos.reshape(-1, 2 * t - 1, h, pd).permute(2, 0, 3, 1)  # (h, 1, pd, 2T-1)
            p = p.reshape(b, t, h, pd).permute(2, 0, 1, 3)    # (h, B, T, pd)
            if (not drawn and _no_grad(scores, p, pos) and scores.device.type == "cpu"
                    and fast_paths.enabled() and not is_tracing()
                    and not torch.compiler.is_compiling()):
                scores = add_relative_in_blocks(scores, p, pos)
            else:
                rel = relative_to_absolute(torch.matmul(p, pos))
                if drawn:      # the step's draw: 1 keeps the positional scores, 0 skips them
                    rel = rel * self._decision[0].to(rel.dtype)
                # no gradient: in place (one (h, B, T, T) tensor fewer to allocate, same values)
                scores = scores.add_(rel) if _no_grad(scores, rel) else scores + rel
        if drawn:
            scores = _PenalizeAbsValuesGtDrawn.apply(scores, 25.0, self._decision[1] * 1.0e-4)
        elif self.training and random.random() < 0.1:
            # failsafe against implausibly large scores (authors: limit 25, penalty 1e-4)
            scores = PenalizeAbsValuesGt.apply(scores, 25.0, 1.0e-4)
        if key_padding_mask is not None:
            if key_padding_mask.shape != (b, t):
                raise ValueError(f"key_padding_mask must have shape ({b}, {t}), got "
                                 f"{tuple(key_padding_mask.shape)}")
            # -1000 (not -inf): exp underflows to exactly 0 without NaNs
            mask = key_padding_mask.unsqueeze(1)
            if _no_grad(scores):        # in place; with a gradient the softmax's own fill
                return scores.masked_fill_(mask, -1000.0).softmax(dim=-1)
            return attention_softmax(scores, dim=-1, mask=mask)
        return attention_softmax(scores, dim=-1)
