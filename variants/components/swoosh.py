"""SwooshR and SwooshL (paper section 3.4, eq. 4) and Swish.

    SwooshR(x) = log(1 + exp(x - 1)) - 0.08 x - 0.313261687
    SwooshL(x) = log(1 + exp(x - 4)) - 0.08 x - 0.035
    Swish(x)   = x * sigmoid(x)

The SwooshR offset makes SwooshR(0) = 0.

Training memory: plain autograd keeps the shifted input ``x - 1`` (float32 under
CUDA autocast, where softplus runs in float32) for the backward pass. When a
gradient is needed the Swoosh modules instead keep their derivative,
``sigmoid(x - offset) - 0.08`` in (-0.08, 0.92), rounded to one of 256 levels
(one byte, error at most 0.002; the authors' scheme, except that they dither
the rounding, which costs a random number per element and ~30 % more time
here): a quarter of a float32 copy, the forward values unchanged. Where the activation
is followed by dropout and a Linear, :mod:`.activation_dropout_linear` keeps
only the activation's input and recomputes.

On CPU (``variants.fast_paths.cpu_layout``, where step time matters more than
memory) the rounded derivative is kept as the float32 value its byte stands
for (the same values, bit for bit), which saves the byte conversions both ways.
On one CPU thread (``cpu_kernels.usable``) the value with the rounded derivative
(:func:`swoosh_and_level_deriv`) and the value with the exact derivative and a dropout
mask (``fn_and_deriv``, for :mod:`.activation_dropout_linear`) are one C pass each
(csrc/swoosh.c), within float32 roundings.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .. import fast_paths
from . import cpu_kernels

#: derivative range of both Swooshes (with a margin): 256 levels, one byte
DERIV_MIN, DERIV_MAX = -0.08, 0.925
LEVEL_STEP = (DERIV_MAX - DERIV_MIN) / 255.0


#: the exp/log form of softplus (below) is used on CPU tensors of at least this many
#: elements (under it the extra kernel launches cost more than they save)
EXP_LOG_MIN_NUMEL = 1 << 14
#: above this z softplus is z itself (torch's threshold); exp is taken of min(z, this)
EXP_LOG_THRESHOLD = 20.0


def _exp_log(z: torch.Tensor) -> bool:
    """Whether ``softplus(z)`` is computed as ``max(log(1 + exp(min(z, 20))), z)``.

    torch's fused CPU softplus spends most of its time in an unvectorised
    ``log1p`` (3.3 ms for 2.1 M float32 elements, one thread); ``min``, ``exp``,
    ``+ 1``, ``log`` and ``max`` take 2.5 ms, with no value read back. The two
    agree to a few float32 roundings: ``1 + exp(z)`` rounds away ``exp(z)``
    below about ``6e-8`` (an absolute error of that size in a Swoosh value);
    above ``z = 20`` both are ``z`` itself (``log(1 + exp(z)) > z`` everywhere, so
    the ``max`` picks the log below it); NaN and infinities come out as
    softplus's. A fast path (off under :func:`~variants.fast_paths.reference_paths`).
    """
    return (z.device.type == "cpu" and z.dtype == torch.float32
            and z.numel() >= EXP_LOG_MIN_NUMEL and fast_paths.enabled()
            and not torch.jit.is_tracing() and not torch.compiler.is_compiling())


def _exp_log_softplus(z: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """softplus(z) in the exp/log form (see :func:`_exp_log`), into ``out`` if given
    (``out`` may be ``z``)."""
    e = torch.clamp_max(z, EXP_LOG_THRESHOLD).exp_().add_(1.0).log_()
    return torch.maximum(e, z, out=e if out is None else out)


def _softplus(z: torch.Tensor) -> torch.Tensor:
    """softplus(z), a new tensor (``z`` unchanged); no autograd graph."""
    if _exp_log(z):
        return _exp_log_softplus(z)
    return F.softplus(z)


# log(1 + exp(z)) is softplus(z): one fused kernel, no zeros tensor to allocate
# (softplus switches to the identity above z = 20, where the two agree to 2e-9).
def _swoosh(x: torch.Tensor, offset: float, constant: float) -> torch.Tensor:
    if torch.is_grad_enabled() and x.requires_grad:
        return torch.add(F.softplus(x - offset), x, alpha=-0.08) - constant
    # no gradient (eval, or inside an autograd Function): one tensor allocated and four
    # passes over it (softplus written in place, x * 0.08 fused into the subtraction);
    # the same arithmetic as the gradient path, bit for bit (x * 0.08 is fused into the
    # subtraction everywhere: add with alpha = -0.08)
    if torch.jit.is_tracing() or torch.compiler.is_compiling():   # no out= variants there
        return torch.add(F.softplus(x - offset), x, alpha=-0.08).sub_(constant)
    z = torch.sub(x, offset)
    if _exp_log(z):
        _exp_log_softplus(z, out=z)
    else:
        torch._C._nn.softplus(z, 1.0, 20.0, out=z)
    return z.add_(x, alpha=-0.08).sub_(constant)


def _swoosh_and_sigmoid(x: torch.Tensor, offset: float, constant: float
                        ) -> tuple[torch.Tensor, torch.Tensor]:
    """(swoosh(x), sigmoid(x - offset)); the derivative is the latter - 0.08."""
    z = x - offset
    if fast_paths.enabled():
        # in place (two new tensors instead of five); the same values, bit for bit
        return _softplus(z).add_(x, alpha=-0.08).sub_(constant), z.sigmoid_()
    return torch.add(_softplus(z), x, alpha=-0.08) - constant, torch.sigmoid(z)


def _swoosh_and_byte_deriv(x: torch.Tensor, offset: float, constant: float
                           ) -> tuple[torch.Tensor, torch.Tensor]:
    """(swoosh(x), the byte _SwooshFunction keeps): the same arithmetic as the
    reference path in three new float tensors instead of six (in-place steps); bit for
    bit where torch's softplus is used (see :func:`_exp_log`)."""
    z = x - offset
    y = _softplus(z).add_(x, alpha=-0.08).sub_(constant)
    q = z.sigmoid_().mul_(1.0 / LEVEL_STEP).add_(0.5).to(torch.uint8)
    return y, q


#: exp is taken of z itself (no clamp, no maximum) when max(z) is at most this: log(1 + exp(z))
#: rounds to z's softplus within float32 roundings up to here (exp overflows past ~88.7)
EXP_NO_CLAMP_MAX = 80.0


def softplus_unclamped(z: torch.Tensor) -> torch.Tensor:
    """softplus(z) as a new tensor, for a float32 CPU ``z`` (see :func:`_exp_log`): log(1 +
    exp(z)), with the clamp and the maximum of :func:`_exp_log_softplus` only where z
    exceeds :data:`EXP_NO_CLAMP_MAX` (one max reduction says so; on the CPU reading it
    costs no synchronisation): 4 passes instead of 5, and no clamped copy. It agrees
    with softplus within float32 roundings (above z = 20, where softplus is z itself,
    log(1 + exp(z)) rounds to z)."""
    # amax: max() of a channels-last tensor makes a contiguous copy first
    if float(z.amax()) <= EXP_NO_CLAMP_MAX:       # False for NaN: the clamped form below
        return torch.exp(z).add_(1.0).log_()
    return _exp_log_softplus(z)


def level_deriv(z: torch.Tensor, inplace: bool = False) -> torch.Tensor:
    """The dequantized rounded derivative level (sigmoid(z) - 0.08 in 256 levels) of a
    Swoosh whose shifted input is ``z``, computed in ``z``'s memory if ``inplace``.

    On a large float32 CPU tensor (:func:`_exp_log`) each of the two affine maps is one
    pass (``add`` of a 0-dim tensor with ``alpha``) instead of a multiply and an add: 4
    passes instead of 6. Its fused
    multiply-add rounds once where the two ops round twice, so the dequantized value can
    differ from the reference's by one float32 rounding (~6e-8); the level itself
    (floor of sigmoid / step + 0.5) changes only if that single rounding crosses an
    integer, which none of 2.2 M random inputs did (a measure-zero case).
    """
    s = z.sigmoid_() if inplace else torch.sigmoid(z)
    if _exp_log(z):
        shift, low = torch.tensor(0.5), torch.tensor(DERIV_MIN)
        torch.add(shift, s, alpha=1.0 / LEVEL_STEP, out=s).floor_()
        return torch.add(low, s, alpha=LEVEL_STEP, out=s)
    return s.mul_(1.0 / LEVEL_STEP).add_(0.5).floor_().mul_(LEVEL_STEP).add_(DERIV_MIN)


def swoosh_and_level_deriv(x: torch.Tensor, offset: float, constant: float
                            ) -> tuple[torch.Tensor, torch.Tensor]:
    """(swoosh(x), the float32 derivative the byte of :func:`_swoosh_and_byte_deriv` stands
    for): the byte's level (the rounded value is in [0.5, 254], so ``floor`` is the byte
    conversion's truncation) dequantized without a byte in between; bit for bit under
    :func:`_exp_log`'s size limit, within roundings above it (:func:`softplus_unclamped`,
    :func:`level_deriv`)."""
    if cpu_kernels.usable(x) and cpu_kernels.dense(x):
        # one pass (csrc/swoosh.c) instead of ~11; within float32 roundings of the torch
        # arithmetic below (a rounding may move a derivative level by one step)
        y, d = torch.empty_like(x), torch.empty_like(x)
        cpu_kernels.call("swoosh_forward", x, y, d, x.numel(), offset, constant, LEVEL_STEP, DERIV_MIN)
        return y, d
    z = x - offset
    sp = softplus_unclamped(z) if _exp_log(z) else _softplus(z)
    return sp.add_(x, alpha=-0.08).sub_(constant), level_deriv(z, inplace=True)


def swoosh_r(x: torch.Tensor) -> torch.Tensor:
    return _swoosh(x, 1.0, 0.313261687)


def swoosh_l(x: torch.Tensor) -> torch.Tensor:
    return _swoosh(x, 4.0, 0.035)


def swish(x: torch.Tensor) -> torch.Tensor:
    return x * torch.sigmoid(x)


def dequantize_deriv(q: torch.Tensor) -> torch.Tensor:
    """The float32 derivative a byte of :class:`_SwooshFunction` stands for."""
    return q.to(torch.float32).mul_(LEVEL_STEP).add_(DERIV_MIN)


class _SwooshFunction(torch.autograd.Function):
    """swoosh(x) in float32 (returned in x's dtype); keeps only the derivative, as one byte."""

    @staticmethod
    def forward(ctx, x, offset, constant):  # type: ignore[override]
        with torch.autocast(x.device.type, enabled=False):
            ctx.level = False
            if fast_paths.cpu_layout(x):
                # CPU: the dequantized derivative itself is kept (float32, 4x the byte's
                # memory; the same values), one pass in the backward instead of four
                y, d = swoosh_and_level_deriv(x.float(), offset, constant)
                ctx.save_for_backward(d)
                ctx.level = True
                return y.to(x.dtype)
            if fast_paths.enabled():
                y, q = _swoosh_and_byte_deriv(x.float(), offset, constant)
                ctx.save_for_backward(q)
                return y.to(x.dtype)
            y, sig = _swoosh_and_sigmoid(x.float(), offset, constant)
            # (deriv - DERIV_MIN) / step = sigmoid / step, as DERIV_MIN = -0.08; rounded to
            # nearest (the authors dither instead, which costs a random number per element)
            ctx.save_for_backward(sig.mul_(1.0 / LEVEL_STEP).add_(0.5).to(torch.uint8))
            return y.to(x.dtype)

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        (q,) = ctx.saved_tensors
        if ctx.level:
            return torch.mul(q, grad).to(grad.dtype), None, None
        return dequantize_deriv(q).mul_(grad).to(grad.dtype), None, None


class Swish(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return swish(x)

    @staticmethod
    def fn(x: torch.Tensor) -> torch.Tensor:
        return swish(x)

    @staticmethod
    def fn_and_deriv(x: torch.Tensor, mask: torch.Tensor | None = None
                     ) -> tuple[torch.Tensor, torch.Tensor]:
        s = torch.sigmoid(x)
        y, d = x * s, s * (1.0 + x * (1.0 - s))
        return (y, d) if mask is None else (y.mul_(mask), d.mul_(mask))


class _Swoosh(nn.Module):
    offset: float
    constant: float

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # compiled (torch.compile): the plain ops (inductor derives and fuses the backward)
        if torch.is_grad_enabled() and x.requires_grad and not torch.compiler.is_compiling():
            return _SwooshFunction.apply(x, self.offset, self.constant)
        return _swoosh(x, self.offset, self.constant)

    def fn(self, x: torch.Tensor) -> torch.Tensor:
        return _swoosh(x, self.offset, self.constant)

    def fn_and_deriv(self, x: torch.Tensor, mask: torch.Tensor | None = None
                     ) -> tuple[torch.Tensor, torch.Tensor]:
        """(swoosh(x), its derivative), new tensors, both times ``mask`` (broadcasting
        against ``x``) if given."""
        if (cpu_kernels.usable(x) and x.numel() > 0 and x.is_contiguous()
                and _kernel_mask(x, mask)):
            # one pass (csrc/swoosh.c) instead of ~10 (and two for the mask): within
            # float32 roundings of the torch arithmetic below
            y, d = torch.empty_like(x), torch.empty_like(x)
            b, c = (1 if mask is None else x.shape[0]), x.shape[-1]
            cpu_kernels.call("swoosh_and_deriv", x, mask, y, d, b, x.numel() // (b * c), c,
                             self.offset, self.constant)
            return y, d
        y, sig = _swoosh_and_sigmoid(x, self.offset, self.constant)
        d = sig.sub_(0.08)
        return (y, d) if mask is None else (y.mul_(mask), d.mul_(mask))


def _kernel_mask(x: torch.Tensor, mask: torch.Tensor | None) -> bool:
    """Whether the C loop takes ``mask``: None, or a contiguous float32 (B, 1, C) mask of a
    (B, T, C) ``x`` (dropout shared over time: dropout.py)."""
    return mask is None or (x.ndim == 3 and mask.dtype == torch.float32 and mask.is_contiguous()
                            and mask.shape == (x.shape[0], 1, x.shape[2]))


class SwooshR(_Swoosh):
    offset, constant = 1.0, 0.313261687


class SwooshL(_Swoosh):
    offset, constant = 4.0, 0.035
