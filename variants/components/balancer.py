"""Balancer (paper appendix A.3.1): identity in the forward pass; in the backward
pass it adds the gradient of a per-channel constraint loss

    L_RMS  = |log(clamp(RMS[x], r_min, r_max) / RMS[x])|
    L_mean = |E[x]/sqrt(Var[x]) - clamp(E[x]/sqrt(Var[x]), mu_min, mu_max)|

to the incoming gradient g, scaled as  g' * alpha / RMS[g'] * |g|  (alpha = 0.04).
The limits are given, as in the paper, as a proportion of positive values
(p_min, p_max -> mu via arctanh(2p - 1) / (sqrt(pi) log 2)) and a mean absolute
value (a_min, a_max -> r = sqrt(pi/2) a). As in the authors' implementation it
acts on a random fraction ``prob`` of training steps, and only in training.

With drawn decisions (``predrawn``, for torch.compile: see scheduled_float.py)
the step's draw and limits arrive as one float64 tensor and the backward adds
the constraint gradient times the 0/1 draw, from the closed-form gradient of
eq. 9 in the per-channel moments (no autograd inside the backward).

On one CPU thread (``cpu_kernels.usable``) the backward is one C call
(csrc/balancer.c: float64 sums per channel, the closed form, the add) for any size
and for x as rows of a wider matrix (a projection's channel slice: :func:`frame_rows`).
"""
from __future__ import annotations

import math
import random

import torch
from torch import nn

from .. import fast_paths
from .scheduled_float import FloatLike, ScheduledFloat, fill_decision
from . import cpu_kernels
from .scratch import scratch


def proportion_positive_to_mean(p: float) -> float:
    """mu = arctanh(2p - 1) / (sqrt(pi) * log 2): E[x]/sqrt(Var[x]) for a proportion p > 0."""
    z = 2.0 * p - 1.0
    eps = 1.0e-10  # p of exactly 0 or 1 gives a large finite value
    atanh = (math.log(1.0 + z + eps) - math.log(1.0 - z + eps)) / 2.0
    return atanh / (math.sqrt(math.pi) * math.log(2.0))


def abs_to_rms(a: float) -> float:
    """RMS of a zero-mean Gaussian whose mean absolute value is ``a``: sqrt(pi/2) * a."""
    return math.sqrt(math.pi / 2.0) * a


def balancer_loss(x: torch.Tensor, channel_dim: int, min_mean: float, max_mean: float,
                  min_rms: float, max_rms: float) -> torch.Tensor:
    """Per-channel L_RMS + L_mean (eq. 9), shape keeps the channel axis."""
    dims = [d for d in range(x.ndim) if d != channel_dim]
    uncentered_var = (x ** 2).mean(dim=dims, keepdim=True)
    mean = x.mean(dim=dims, keepdim=True)
    return _loss_from_moments(mean, uncentered_var, min_mean, max_mean, min_rms, max_rms)


def _loss_from_moments(mean: torch.Tensor, uncentered_var: torch.Tensor, min_mean: float,
                       max_mean: float, min_rms: float, max_rms: float) -> torch.Tensor:
    """Eq. 9 from the per-channel mean E[x] and uncentered variance E[x^2]."""
    stddev = (uncentered_var - mean * mean).clamp(min=1.0e-20).sqrt()
    rms = uncentered_var.clamp(min=1.0e-20).sqrt()
    m = mean / stddev
    mean_loss = (m - m.clamp(min=min_mean, max=max_mean)).abs()
    rms_loss = (rms.clamp(min=min_rms, max=max_rms) / rms).log().abs()
    return mean_loss + rms_loss


#: the (frames, channels) backward is used on float32 CPU tensors of at least this many elements
FRAMES_BY_CHANNELS_MIN_NUMEL = 1 << 14


class _BalancerFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, limits, grad_scale, channel_dim):  # type: ignore[override]
        ctx.save_for_backward(x)
        ctx.limits, ctx.grad_scale, ctx.channel_dim = limits, grad_scale, channel_dim
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        (x,) = ctx.saved_tensors
        if fast_paths.enabled():
            if (cpu_kernels.usable(x) and grad.dtype == torch.float32
                    and all(isinstance(v, float) for v in (*ctx.limits, ctx.grad_scale))):
                rows = frame_rows(x, grad, ctx.channel_dim)
                if rows is not None and x.numel() > 0:
                    # any size, rows of a wider matrix too: one C call (csrc/balancer.c)
                    ldx, ldg, in_order = rows
                    c = x.shape[ctx.channel_dim]
                    n = x.numel() // c
                    out = torch.empty((n, c))
                    cpu_kernels.call("balancer_extra_rows", x, ldx, grad, ldg, out, c,
                                     n, c, *ctx.limits, ctx.grad_scale)
                    return rows_as(out, grad, in_order, ctx.channel_dim), None, None, None
            if (x.device.type == "cpu" and x.dtype == grad.dtype == torch.float32
                    and x.numel() >= FRAMES_BY_CHANNELS_MIN_NUMEL):
                xm = as_frames_by_channels(x, ctx.channel_dim)
                gm = as_frames_by_channels(grad, ctx.channel_dim)
                if xm is not None and gm is not None and xm.stride() == gm.stride():
                    out = add_extra_gradient_2d(xm, gm, ctx.limits, ctx.grad_scale)
                    return out.view(gm.shape).as_strided(grad.shape, grad.stride()), None, None, None
            return _fused_backward(x, grad, ctx.limits, ctx.grad_scale, ctx.channel_dim), None, None, None
        with torch.enable_grad(), torch.autocast(x.device.type, enabled=False):
            xf = x.detach().float().requires_grad_(True)
            loss = balancer_loss(xf, ctx.channel_dim, *ctx.limits)
            (loss_grad,) = torch.autograd.grad(loss.sum(), xf)
        dims = [d for d in range(x.ndim) if d != ctx.channel_dim]
        loss_grad_rms = (loss_grad ** 2).mean(dim=dims, keepdim=True).sqrt().clamp(min=1.0e-20)
        g = grad.float()
        extra = g.abs() * loss_grad * (ctx.grad_scale / loss_grad_rms)
        return (g + extra).to(grad.dtype), None, None, None


def _fused_backward(x: torch.Tensor, grad: torch.Tensor, limits: tuple[float, float, float, float],
                    grad_scale: float, channel_dim: int) -> torch.Tensor:
    """The backward above from per-channel moments, in three full-size passes instead of ~20.

    Eq. 9 depends on x only through each channel's mean m and E[x^2] u, so its
    gradient is affine in x per channel: dL/dx = (dL/dm + 2 x dL/du) / N =: a + b x,
    and RMS[a + b x]^2 = a^2 + 2 a b m + b^2 u. The extra gradient
    |g| (a + b x) alpha / RMS is then |g| (a' + b' x) with a', b' per channel.
    """
    # the per-channel scalars in float64 (a and b x nearly cancel for a channel far from 0);
    # eq. 9's gradient in the moments in closed form (:func:`_moment_grads`: ~20 small ops
    # instead of an autograd graph of ~50 and its engine run, per acting Balancer)
    with torch.no_grad(), torch.autocast(x.device.type, enabled=False):
        xf, n, mean, u = _channel_moments(x, channel_dim)
        d_mean, d_u = _moment_grads(mean, u, *limits)
        return _extra_gradient(xf, grad, n, mean, u, d_mean, d_u, grad_scale)


def affine_loss_grad(s1: torch.Tensor, s2: torch.Tensor, n: int, limits: tuple[float, float, float, float],
                     grad_scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel float32 (A, B) with the scaled constraint gradient of :func:`_fused_backward`
    ``loss_grad * grad_scale / RMS[loss_grad] = A + B x`` for the Balancer's input ``x``,
    from the per-channel sums ``s1 = sum x`` and ``s2 = sum x^2`` (float64) over ``n`` frames.

    The same closed form as :func:`_extra_gradient` (there ``c + b (x - mean)``), with the
    per-channel constant folded in float64, so the extra gradient is one pass (A + B x_s)
    instead of two; the Balancer's limits keep |mean| / std bounded, so the float32 sum
    does not cancel more than the centred form.
    """
    mean = s1 / n
    u = s2 / n
    d_mean, d_u = _moment_grads(mean, u, *limits)
    a, b = d_mean / n, d_u * (2.0 / n)
    c = a + b * mean
    var = (u - mean * mean).clamp(min=0.0)
    rms = (c * c + b * b * var).sqrt().clamp(min=1.0e-20)
    coef = grad_scale / rms
    return (c * coef - b * coef * mean).float(), (b * coef).float()


def add_extra_gradient_2d(x: torch.Tensor, grad: torch.Tensor, limits: tuple[float, float, float, float],
                          grad_scale: float, out: torch.Tensor | None = None) -> torch.Tensor:
    """:func:`_fused_backward` for float32 ``x`` and ``grad`` seen as (frames, channels)
    matrices of the same strides: the moments from two reductions, and the extra gradient
    in three passes (A + B x, |grad|, the sum) instead of four; into ``out`` if given
    (``out`` may be ``grad``: the fused CPU paths add it in place)."""
    n = x.shape[0]
    if (cpu_kernels.usable(x) and x.is_contiguous() and grad.is_contiguous()
            and (out is None or out.is_contiguous())
            and all(isinstance(v, float) for v in (*limits, grad_scale))):
        # two passes over x and one over grad, the per-channel arithmetic in one call
        # (csrc/balancer.c; float64 sums in another order: within float32 roundings)
        out = torch.empty_like(grad) if out is None else out
        cpu_kernels.call("balancer_extra_2d", x, grad, out, n, x.shape[1], *limits, grad_scale)
        return out
    # temporaries in scratch buffers kept between steps (see .scratch: no page faults)
    tmp = torch.mul(x, x, out=scratch("balancer.tmp", tuple(x.shape), x))
    s1 = x.sum(dim=0).double()
    s2 = tmp.sum(dim=0).double()
    a, b = affine_loss_grad(s1, s2, n, limits, grad_scale)
    lg = torch.addcmul(a, x, b, out=tmp)
    return torch.addcmul(grad, torch.abs(grad, out=scratch("balancer.abs", tuple(grad.shape), grad)),
                         lg, out=out)


def as_frames_by_channels(t: torch.Tensor, channel_dim: int) -> torch.Tensor | None:
    """``t`` as a (frames, channels) view with the channels last, or None where no view is.

    The frames come in memory order (the other axes sorted by stride), so a transposed view
    such as ConvNeXt's (B, F, T, C) of a channels-last tensor is one too; per-channel
    statistics and frame-wise maps do not depend on the frames' order."""
    channel_dim %= t.ndim
    others = sorted((d for d in range(t.ndim) if d != channel_dim), key=lambda d: -t.stride(d))
    p = t.permute(others + [channel_dim])
    if not p.is_contiguous():
        return None
    return p.view(-1, t.shape[channel_dim])


def row_stride(t: torch.Tensor) -> int | None:
    """The row stride of ``t`` (channels last, unit channel stride) seen as (frames,
    channels) rows in logical order with one stride (at least the row's length), or None
    where it has none."""
    c = t.shape[-1]
    if t.is_contiguous():
        return c
    if t.stride(-1) != 1 and c != 1:
        return None
    ld = expected = None
    for d in range(t.ndim - 2, -1, -1):
        if t.shape[d] == 1:
            continue
        if expected is None:
            ld = t.stride(d)
            expected = ld * t.shape[d]
        elif t.stride(d) != expected:
            return None
        else:
            expected *= t.shape[d]
    ld = c if ld is None else ld
    return ld if ld >= c else None


def frame_rows(x: torch.Tensor, grad: torch.Tensor, channel_dim: int = -1
               ) -> tuple[int, int, bool] | None:
    """(ldx, ldg, in_order): ``x`` and ``grad`` seen from their first elements as (frames,
    channels) rows of unit channel stride and row strides ldx and ldg, the same frames in
    the same order, for the C loops of the backward passes (cpu_kernels): frames in logical
    order (``in_order``; the channels last, any row strides, e.g. a slice of a projection's
    output: :func:`row_stride`), or in memory order where ``x`` and ``grad`` have the same
    gap-free strides (:func:`as_frames_by_channels`: rows of the channels' count); None
    where neither applies."""
    channel_dim %= x.ndim
    if channel_dim == x.ndim - 1:
        ldx, ldg = row_stride(x), row_stride(grad)
        if ldx is not None and ldg is not None:
            return ldx, ldg, True
    if x.stride() != grad.stride() or as_frames_by_channels(x, channel_dim) is None:
        return None
    c = x.shape[channel_dim]
    return c, c, False


def rows_as(out: torch.Tensor, grad: torch.Tensor, in_order: bool, channel_dim: int = -1) -> torch.Tensor:
    """A contiguous (frames, channels) ``out`` in ``grad``'s shape, its frames in the order
    :func:`frame_rows` took ``grad``'s in: logical (``in_order``: a contiguous result),
    or ``grad``'s memory order (``grad``'s strides)."""
    if in_order:
        return out.view(grad.shape)
    return out.view(as_frames_by_channels(grad, channel_dim).shape).as_strided(grad.shape, grad.stride())


def _channel_moments(x: torch.Tensor, channel_dim: int
                     ) -> tuple[torch.Tensor, int, torch.Tensor, torch.Tensor]:
    """x in float32, the frames per channel N, and each channel's E[x] and E[x^2] in float64."""
    dims = [d for d in range(x.ndim) if d != channel_dim]
    xf = x.detach().float()
    n = xf.numel() // xf.shape[channel_dim]
    mean = xf.sum(dim=dims, keepdim=True).double() / n
    u = (xf * xf).sum(dim=dims, keepdim=True).double() / n
    return xf, n, mean, u


def _extra_gradient(xf: torch.Tensor, grad: torch.Tensor, n: int, mean: torch.Tensor, u: torch.Tensor,
                    d_mean: torch.Tensor, d_u: torch.Tensor, grad_scale: "float | torch.Tensor"
                    ) -> torch.Tensor:
    """grad + |grad| (a + b x) grad_scale / RMS[a + b x] from eq. 9's gradient in the moments
    (see :func:`_fused_backward`)."""
    a, b = d_mean / n, d_u * (2.0 / n)
    # a + b x = c + b (x - mean), c = a + b mean;  RMS^2 = c^2 + b^2 Var[x]
    c = a + b * mean
    rms = (c * c + b * b * (u - mean * mean).clamp(min=0.0)).sqrt().clamp(min=1.0e-20)
    coef = grad_scale / rms
    loss_grad = torch.addcmul((c * coef).float(), xf - mean.float(), (b * coef).float())
    g = grad.float()
    return torch.addcmul(g, g.abs(), loss_grad).to(grad.dtype)


def _moment_grads(mean: torch.Tensor, u: torch.Tensor, min_mean: "float | torch.Tensor",
                  max_mean: "float | torch.Tensor",
                  min_rms: "float | torch.Tensor", max_rms: "float | torch.Tensor"
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """d(sum of eq. 9)/d mean and d/d u of :func:`_loss_from_moments`, in closed form (the
    derivative autograd takes there, clamps included: a clamp passes the gradient on its
    boundary, |.| has derivative sign(.), 0 at 0)."""
    var = u - mean * mean
    sd = var.clamp(min=1.0e-20).sqrt()
    rms = u.clamp(min=1.0e-20).sqrt()
    m = mean / sd
    dm = torch.sign(m - torch.clamp(m, min=min_mean, max=max_mean))          # d|m - clamp(m)|/dm
    q = (torch.clamp(rms, min=min_rms, max=max_rms) / rms).log()
    drms = -torch.sign(q) / rms                                               # d|q|/d rms (0 in range)
    dsd_dvar = (var >= 1.0e-20).to(var.dtype) * 0.5 / sd
    dm_dvar = -m / sd * dsd_dvar                                              # m = mean / sd(var)
    d_mean = dm * (1.0 / sd + dm_dvar * (-2.0 * mean))
    d_u = dm * dm_dvar + drms * (u >= 1.0e-20).to(u.dtype) * 0.5 / rms
    return d_mean, d_u


class _PredrawnBalancerFunction(torch.autograd.Function):
    """Identity; the backward adds the constraint gradient times the step's 0/1 draw
    (``decision``: float64 [act, min_mean, max_mean, min_rms, max_rms, grad_scale])."""

    @staticmethod
    def forward(ctx, x, decision, channel_dim):  # type: ignore[override]
        ctx.save_for_backward(x, decision)
        ctx.channel_dim = channel_dim
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        x, d = ctx.saved_tensors
        act, min_mean, max_mean, min_rms, max_rms, grad_scale = d.unbind()
        xf, n, mean, u = _channel_moments(x, ctx.channel_dim)
        d_mean, d_u = _moment_grads(mean, u, min_mean, max_mean, min_rms, max_rms)
        # act 0: the extra gradient is exactly 0
        return _extra_gradient(xf, grad, n, mean, u, d_mean, d_u, grad_scale * act), None, None


def apply_balancer(x: torch.Tensor, args: tuple) -> torch.Tensor:
    """Identity on ``x`` whose backward adds the constraint gradient (``args``: :meth:`Balancer.draw`)."""
    return _BalancerFunction.apply(x, *args)


class Balancer(nn.Module):
    """Per-channel activation constraints on sign proportion and magnitude.

    ``min_positive``/``max_positive``: p_min/p_max; ``min_abs``/``max_abs``:
    a_min/a_max; ``grad_scale``: alpha. Any of them may be a ScheduledFloat.
    """

    def __init__(self, num_channels: int, channel_dim: int = -1,
                 min_positive: FloatLike = 0.05, max_positive: FloatLike = 0.95,
                 min_abs: FloatLike = 0.2, max_abs: FloatLike = 100.0,
                 grad_scale: FloatLike = 0.04, prob: FloatLike | None = None):
        super().__init__()
        if num_channels <= 0:
            raise ValueError(f"Balancer num_channels must be positive, got {num_channels}")
        self.num_channels = num_channels
        self.channel_dim = channel_dim
        self.min_positive = min_positive
        self.max_positive = max_positive
        self.min_abs = min_abs
        self.max_abs = max_abs
        self.grad_scale = grad_scale
        # authors' default: often at first, then 1 step in 8
        self.prob = ScheduledFloat((0.0, 0.5), (8000.0, 0.125), default=0.4) if prob is None else prob

    #: take the step's decision from :meth:`decide` (drawn before a compiled region runs)
    predrawn = False
    _decision: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.predrawn and self.training:
            if not x.requires_grad:
                return x
            channel_dim = self.channel_dim % x.ndim
            if x.shape[channel_dim] != self.num_channels:
                raise ValueError(f"Balancer expected {self.num_channels} channels on dim "
                                 f"{self.channel_dim}, got shape {tuple(x.shape)}")
            return _PredrawnBalancerFunction.apply(x, self._decision, channel_dim)
        args = self.draw(x.shape, x.requires_grad)
        return x if args is None else apply_balancer(x, args)

    def decide(self, device: torch.device) -> None:
        """The step's draw (the one :meth:`draw` makes) and limits, into one float64 tensor."""
        act = random.random() < float(self.prob)
        values = [float(act), proportion_positive_to_mean(float(self.min_positive)),
                  proportion_positive_to_mean(float(self.max_positive)),
                  abs_to_rms(float(self.min_abs)), abs_to_rms(float(self.max_abs)),
                  float(self.grad_scale)]
        self._decision = fill_decision(self._decision, values, device)

    def draw(self, shape: torch.Size | tuple[int, ...], requires_grad: bool) -> tuple | None:
        """Whether a forward on a tensor of ``shape`` acts (the one random draw it makes):
        None, or the (limits, grad_scale, channel_dim) it applies (see :func:`apply_balancer`)."""
        if not self.training or not requires_grad or random.random() >= float(self.prob):
            return None
        channel_dim = self.channel_dim % len(shape)
        if shape[channel_dim] != self.num_channels:
            raise ValueError(f"Balancer expected {self.num_channels} channels on dim "
                             f"{self.channel_dim}, got shape {tuple(shape)}")
        limits = (proportion_positive_to_mean(float(self.min_positive)),
                  proportion_positive_to_mean(float(self.max_positive)),
                  abs_to_rms(float(self.min_abs)), abs_to_rms(float(self.max_abs)))
        return limits, float(self.grad_scale), channel_dim

    def extra_repr(self) -> str:
        return f"{self.num_channels}, channel_dim={self.channel_dim}"


def make_balancer(num_channels: int, *, enabled: bool = True, **kwargs) -> nn.Module:
    """A Balancer, or an identity when the ``balancer`` switch is off."""
    return Balancer(num_channels, **kwargs) if enabled else nn.Identity()
