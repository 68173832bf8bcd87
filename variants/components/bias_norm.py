"""BiasNorm (paper section 3.3, eq. 2):

    BiasNorm(x) = x / RMS[x - b] * exp(gamma)

with a learnable channel-wise bias ``b`` and a learnable scalar ``gamma``
(``log_scale``). Like the authors' implementation, ``gamma`` is kept in
[log_scale_min, log_scale_max] during training through its gradient (see
``param_limit``; the forward pass never clamps, so train and eval agree), and
``b`` starts near zero.

Training memory: plain autograd keeps three input-sized tensors (``x - b``,
``x`` and ``x / RMS``, in float32 under CUDA autocast); :class:`_BiasNormFunction`
keeps ``x`` and the per-frame RMS and computes the gradients from them. On one CPU
thread (``cpu_kernels.usable``) its forward and backward are one C call each
(csrc/encoder.c), within float32 roundings of the torch ops.
"""
from __future__ import annotations

import random

import torch
from torch import nn

from . import cpu_kernels
from .lean_autograd import autocast_off, cast
from .param_limit import limit_param_value, limit_param_value_drawn
from .scheduled_float import fill_decision


def _rms(x: torch.Tensor, bias: torch.Tensor, channel_dim: int) -> torch.Tensor:
    return torch.mean((x - bias) ** 2, dim=channel_dim, keepdim=True).clamp_min(1e-20).sqrt()


def _c_loop(x: torch.Tensor, bias: torch.Tensor, log_scale: torch.Tensor, channel_dim: int) -> bool:
    """Whether :class:`_BiasNormFunction` runs its C loops (one CPU thread, float32, the
    channels last and contiguous: ``cpu_kernels.usable``)."""
    return (cpu_kernels.usable(x)
            and channel_dim % x.ndim == x.ndim - 1 and x.is_contiguous()
            and x.numel() > 0 and bias.dtype == log_scale.dtype == torch.float32
            and bias.is_contiguous() and bias.numel() == x.shape[-1])


class _BiasNormFunction(torch.autograd.Function):
    """y = x / rms * exp(log_scale), rms = sqrt(max(mean_c (x - b)^2, 1e-20)); keeps x and rms."""

    @staticmethod
    def forward(ctx, x, bias, log_scale, channel_dim):  # type: ignore[override]
        ctx.channel_dim = channel_dim
        ctx.c_loop = _c_loop(x, bias, log_scale, channel_dim)
        if ctx.c_loop:
            # one C call (csrc/encoder.c) instead of ~8 ops: within float32 roundings
            # (the mean of squares summed in another order)
            y, rms = torch.empty_like(x), torch.empty(x.shape[:-1] + (1,))
            cpu_kernels.call("bias_norm_forward", x, bias, y, rms, rms.numel(), x.shape[-1],
                             float(log_scale))
        else:
            rms = _rms(x, bias, channel_dim)          # the plain module's ops, same values
            y = x / rms * log_scale.exp()
        ctx.save_for_backward(x, bias, log_scale, rms)
        return y

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        x, bias, log_scale, rms = ctx.saved_tensors
        c = ctx.channel_dim
        if ctx.c_loop and cpu_kernels.usable(grad) and grad.is_contiguous():
            gx, gb, gl = torch.empty_like(x), torch.empty_like(bias), torch.empty_like(log_scale)
            cpu_kernels.call("bias_norm_backward", x, bias, rms, grad, gx, gb, gl, rms.numel(),
                             x.shape[-1], float(log_scale))
            return gx, gb, gl, None
        with autocast_off(x.device.type):
            wide = torch.promote_types(x.dtype, torch.float32)
            xf, g, rms = cast(x, wide), cast(grad, wide), cast(rms, wide)
            scale = cast(log_scale, wide).exp()
            gx = (g * xf).sum(dim=c, keepdim=True)               # sum_c g x
            # d rms / d x_c = (x_c - b_c) / (C rms), zero where the clamp is active
            coef = gx * scale / rms ** 3 / x.shape[c]
            coef = torch.where(rms > 1e-10, coef, 0.0)
            centred_coef = (xf - cast(bias, wide)).mul_(coef)
            scale_over_rms = scale / rms
            grad_x = (g * scale_over_rms).sub_(centred_coef)
            reduce = [d for d in range(x.ndim) if d != c % x.ndim]
            grad_bias = centred_coef.sum(dim=reduce).reshape(bias.shape)
            grad_log_scale = (gx * scale_over_rms).sum().reshape(log_scale.shape)
        return (cast(grad_x, x.dtype), cast(grad_bias, bias.dtype),
                cast(grad_log_scale, log_scale.dtype), None)


class BiasNorm(nn.Module):
    def __init__(self, num_channels: int, channel_dim: int = -1, log_scale: float = 1.0,
                 log_scale_min: float = -1.5, log_scale_max: float = 1.5):
        super().__init__()
        self.num_channels = num_channels
        self.channel_dim = channel_dim
        self.log_scale = nn.Parameter(torch.tensor(float(log_scale)))
        self.bias = nn.Parameter(torch.empty(num_channels).normal_(mean=0.0, std=1e-4))
        self.log_scale_min = log_scale_min
        self.log_scale_max = log_scale_max

    #: the limit's draw from :meth:`decide` (drawn before a compiled region: scheduled_float.py)
    predrawn = False
    _decision: torch.Tensor | None = None

    def decide(self, device: torch.device) -> None:
        """The step's draw of the log-scale limit (the one limit_param_value makes)."""
        self._decision = fill_decision(self._decision, [float(random.random() < 0.6),
                                                        self.log_scale_min, self.log_scale_max], device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[self.channel_dim] != self.num_channels:
            raise ValueError(f"BiasNorm expected {self.num_channels} channels on dim "
                             f"{self.channel_dim}, got shape {tuple(x.shape)}")
        bias = self.bias
        if self.channel_dim not in (-1, x.ndim - 1):
            shape = [1] * x.ndim
            shape[self.channel_dim] = -1
            bias = bias.view(shape)
        log_scale = self.log_scale
        if self.training and self.predrawn:
            log_scale = limit_param_value_drawn(log_scale, self._decision)
        elif self.training:
            log_scale = limit_param_value(log_scale, self.log_scale_min, self.log_scale_max)
        if torch.is_grad_enabled() and (x.requires_grad or log_scale.requires_grad
                                        or bias.requires_grad):
            return _BiasNormFunction.apply(x, bias, log_scale, self.channel_dim)
        # no gradient: the same ops, in place where the tensor is ours
        return (x / _rms(x, bias, self.channel_dim)).mul_(log_scale.exp())

    def extra_repr(self) -> str:
        return f"{self.num_channels}, channel_dim={self.channel_dim}"
