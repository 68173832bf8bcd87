"""SwooshR and SwooshL (paper section 3.4, eq. 4) and Swish.

    SwooshR(x) = log(1 + exp(x - 1)) - 0.08 x - 0.313261687
    SwooshL(x) = log(1 + exp(x - 4)) - 0.08 x - 0.035
    Swish(x)   = x * sigmoid(x)

The SwooshR offset makes SwooshR(0) = 0.

Training memory: plain autograd keeps the shifted input ``x - 1`` (float32 under
CUDA autocast, where softplus runs in float32) for the backward pass. When a
gradient is needed the Swoosh modules instead keep their derivative,
``sigmoid(x - offset) - 0.08`` in (-0.08, 0.92), quantized to one byte with
random dithering, so that its expectation is exact (the authors' scheme): a
quarter of a float32 copy, the forward values unchanged. Where the activation
is followed by dropout and a Linear, :mod:`.activation_dropout_linear` keeps
only the activation's input and recomputes.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

#: derivative range of both Swooshes, with a margin so that dithering stays below 256
DERIV_MIN, DERIV_MAX = -0.08, 0.925
_STEP = (DERIV_MAX - DERIV_MIN) / 255.0


# log(1 + exp(z)) is softplus(z): one fused kernel, no zeros tensor to allocate
# (softplus switches to the identity above z = 20, where the two agree to 2e-9).
def swoosh_r(x: torch.Tensor) -> torch.Tensor:
    return F.softplus(x - 1.0) - 0.08 * x - 0.313261687


def swoosh_l(x: torch.Tensor) -> torch.Tensor:
    return F.softplus(x - 4.0) - 0.08 * x - 0.035


def swoosh_r_deriv(x: torch.Tensor) -> torch.Tensor:
    return torch.sigmoid(x - 1.0) - 0.08


def swoosh_l_deriv(x: torch.Tensor) -> torch.Tensor:
    return torch.sigmoid(x - 4.0) - 0.08


def swish(x: torch.Tensor) -> torch.Tensor:
    return x * torch.sigmoid(x)


def swish_deriv(x: torch.Tensor) -> torch.Tensor:
    s = torch.sigmoid(x)
    return s * (1.0 + x * (1.0 - s))


def quantize_deriv(d: torch.Tensor) -> torch.Tensor:
    """float derivative in [DERIV_MIN, DERIV_MAX) -> uint8, dithered (unbiased)."""
    return ((d - DERIV_MIN) / _STEP + torch.rand_like(d)).to(torch.uint8)


def dequantize_deriv(q: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return q.to(dtype) * _STEP + DERIV_MIN


class _SwooshFunction(torch.autograd.Function):
    """fn(x) in float32 (returned in x's dtype); keeps only the byte-quantized derivative."""

    @staticmethod
    def forward(ctx, x, fn, deriv):  # type: ignore[override]
        with torch.autocast(x.device.type, enabled=False):
            xf = x.float()
            ctx.save_for_backward(quantize_deriv(deriv(xf)))
            return fn(xf).to(x.dtype)

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        (q,) = ctx.saved_tensors
        return (grad.float() * dequantize_deriv(q)).to(grad.dtype), None, None


class _Activation(nn.Module):
    fn = staticmethod(swish)
    deriv = staticmethod(swish_deriv)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)


class _Swoosh(_Activation):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled() and x.requires_grad:
            return _SwooshFunction.apply(x, self.fn, self.deriv)
        return self.fn(x)


class SwooshR(_Swoosh):
    fn = staticmethod(swoosh_r)
    deriv = staticmethod(swoosh_r_deriv)


class SwooshL(_Swoosh):
    fn = staticmethod(swoosh_l)
    deriv = staticmethod(swoosh_l_deriv)


class Swish(_Activation):
    pass
