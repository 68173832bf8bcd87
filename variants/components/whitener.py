"""Whitener (paper appendix A.3.2): identity in the forward pass; in the backward
pass, when the whitening metric

    L_whiten = (sum_ij C_ij^2 / D) / (sum_i C_ii / D)^2,   C = centred covariance,

exceeds ``whitening_limit`` (w_min, 10 in the paper; the authors schedule it per
location), it adds g' = grad(L_whiten) scaled to alpha * ||g|| / ||g'||
(alpha = 0.01). With ``num_groups`` > 1 the channels are split into groups,
each whitened separately and pushed towards equal traces. Training only; it
acts on a random fraction of steps: ``prob`` = (min, max), max while the
metric is above the limit, min while below (authors' behaviour).

With drawn decisions (``predrawn``, for torch.compile: see scheduled_float.py)
the step's draw and limit arrive as a float64 tensor; the forward computes the
metric (no gradient), sets the next probability in place and passes a 0/1 flag
(acting and above the limit) to the backward, which adds the penalty gradient
times the flag: the same decisions and arithmetic, no Python state written in
the backward.

On one CPU thread (``cpu_kernels.usable``) the backward reads the decision on the
host (no synchronisation there) and runs the arithmetic around torch's two matrix
products as three C calls (csrc/whitener.c, :func:`_c_backward`): a step that does not
act costs nothing, one below the limit no second product.
"""
from __future__ import annotations

import ctypes
import random

import torch
from torch import nn

from .. import fast_paths
from . import cpu_kernels
from .balancer import as_frames_by_channels, frame_rows, rows_as
from .scheduled_float import FloatLike, fill_decision


def whitening_metric(x: torch.Tensor, num_groups: int = 1) -> torch.Tensor:
    """Eq. 10 over the last axis (channels); 1.0 when perfectly white, larger otherwise."""
    x = x.reshape(-1, x.shape[-1])
    frames, channels = x.shape
    if channels % num_groups:
        raise ValueError(f"whitening_metric: {channels} channels not divisible by num_groups={num_groups}")
    per_group = channels // num_groups
    x = x.reshape(frames, num_groups, per_group).transpose(0, 1)
    x = x - x.mean(dim=1, keepdim=True)
    covar = torch.matmul(x.transpose(1, 2), x)  # (groups, d, d)
    mean_diag = torch.diagonal(covar, dim1=1, dim2=2).mean()
    mean_sq = (covar ** 2).sum() / (num_groups * per_group)
    return mean_sq / (mean_diag ** 2 + 1.0e-20)


class _WhitenerFunction(torch.autograd.Function):
    """Identity forward; the backward decides on the device (no value read back to the host)
    whether this step whitens: the step's draw ``r`` against the Whitener's probability
    (a device tensor its earlier backward passes set) and the metric against the limit."""

    @staticmethod
    def forward(ctx, x, module, draw):  # type: ignore[override]
        ctx.save_for_backward(x)
        ctx.module = module
        ctx.draw = draw
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        (x,) = ctx.saved_tensors
        w: Whitener = ctx.module
        if fast_paths.enabled():
            if cpu_kernels.usable(x) and grad.dtype == torch.float32:
                out = _c_backward(x, grad, w, ctx.draw)
                if out is not None:
                    return out, None, None
            if (w.num_groups == 1 and x.device.type == "cpu"
                    and x.dtype == grad.dtype == torch.float32):
                xm = as_frames_by_channels(x, x.ndim - 1)
                gm = as_frames_by_channels(grad, grad.ndim - 1)
                if xm is not None and gm is not None and xm.stride() == gm.stride():
                    out = _fused_backward_2d(xm, gm, w, ctx.draw)
                    return out.view(gm.shape).as_strided(grad.shape, grad.stride()), None, None
            return _fused_backward(x, grad, w, ctx.draw), None, None
        with torch.enable_grad(), torch.autocast(x.device.type, enabled=False):
            xf = x.detach().float().requires_grad_(True)
            metric = whitening_metric(xf, w.num_groups)
            (penalty_grad,) = torch.autograd.grad(metric, xf)
        return _apply(w, ctx.draw, metric.detach(), grad, penalty_grad), None, None


def _apply(w: "Whitener", draw: float, metric: torch.Tensor, grad: torch.Tensor,
           penalty_grad: torch.Tensor) -> torch.Tensor:
    """The step's result, decided on the device. ``acting``: the draw fell within the
    probability (what the authors test on the host before the forward); then the metric
    sets the next probability (min below the limit, max above) and, above the limit, the
    penalty gradient scaled to grad_scale * ||grad|| is added."""
    whitens = _decide(w, draw, metric, grad.device)
    scale = float(w.grad_scale) * grad.float().norm() / (penalty_grad.norm() + 1.0e-20)
    return torch.where(whitens, grad + (penalty_grad * scale).to(grad.dtype), grad)


def _decide(w: "Whitener", draw: float, metric: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Whether this step whitens (0-dim bool, on the device: acting and above the limit),
    and the next probability set from the metric where it acts (see :func:`_apply`)."""
    prob = w._prob_tensor(device)            # float64: the draw compares as on the host
    acting = prob >= draw
    above = ~(metric < float(w.whitening_limit))
    w._prob_t = torch.where(acting, torch.where(above, w._max_t, w._min_t), prob)
    return acting & above


def _fused_backward(x: torch.Tensor, grad: torch.Tensor, w: "Whitener", draw: float) -> torch.Tensor:
    """The backward above with the metric's gradient in closed form (no autograd graph).

    With centred xc (groups, frames, d), C = xc^T xc, K = groups * d, s = sum C^2 / K,
    t = trace C / K and M = s / (t^2 + 1e-20): dM/dC = (2 C - 2 s t / (t^2 + 1e-20) I)
    / (K (t^2 + 1e-20)), and dM/dx = 2 xc dM/dC (centring adds nothing: xc's columns
    sum to zero).
    """
    with torch.autocast(x.device.type, enabled=False):
        xc, covar = _centred_covariance(x, w.num_groups)
        penalty_grad, metric = _penalty_grad(xc, covar, x.shape)
        return _apply(w, draw, metric, grad, penalty_grad)


def _fused_backward_2d(xm: torch.Tensor, gm: torch.Tensor, w: "Whitener", draw: float) -> torch.Tensor:
    """:func:`_fused_backward` for one group, float32 ``x`` and ``grad`` seen as (frames,
    channels) matrices of the same strides (in memory order, whatever the tensors' layout:
    the covariance and the penalty gradient are sums over frames and maps of each frame),
    so nothing is copied into another layout and back (ConvNeXt's (B, F, T, C) view of a
    channels-last tensor: 7.8 ms a step at 4 x 64 x 103 x 19 before). The penalty
    gradient is added scaled by 0 or 1 (acting and above the limit, decided on the device
    as before) in place of a ``torch.where``: two passes instead of four. Within float32
    rounding of :func:`_fused_backward` (the frames are summed in another order)."""
    xc = xm - xm.mean(dim=0)
    covar = torch.mm(xc.t(), xc).unsqueeze(0)                   # (1, d, d)
    d_covar, metric = _covariance_grad(covar)
    half = torch.mm(xc, d_covar[0])                             # the penalty gradient / 2
    del xc
    whitens = _decide(w, draw, metric, gm.device)
    # grad_scale ||g|| / ||penalty|| times the penalty = that over ||half|| times half
    scale = (float(w.grad_scale) * gm.norm() / (2.0 * half.norm() + 1.0e-20)) * 2.0
    return half.mul_(scale * whitens.float()).add_(gm)


#: the C backward's (metric, above the limit) (whitener_metric writes them)
_info = (ctypes.c_double * 2)()


def _c_backward(x: torch.Tensor, grad: torch.Tensor, w: "Whitener", draw: float) -> torch.Tensor | None:
    """The backward for float32 CPU tensors on one thread (``cpu_kernels.usable``), any
    ``num_groups``, ``x`` and ``grad`` seen as (frames, channels) rows (:func:`frame_rows`;
    None where they are not: the torch paths run). The decision is read on the host (no
    synchronisation on the CPU), so a step that does not act (the draw above the
    probability, most steps at the minimum probability) returns ``grad`` as it is
    (what :func:`_apply` computes, without the metric), and one below the limit returns it
    after the metric alone (no second matrix product). The matrix products are torch's
    (BLAS); the centring, the metric with dM/dC, the norms and the final add are three
    C calls (csrc/whitener.c: float64 sums, within float32 roundings of the torch path;
    a metric within a rounding of the limit may decide the other way)."""
    rows = frame_rows(x, grad)
    if rows is None or x.numel() == 0:
        return None
    ldx, ldg, in_order = rows
    prob = w._prob_tensor(x.device)
    if not float(prob) >= draw:                 # not acting: the probability stays
        return grad
    c = x.shape[-1]
    n = x.numel() // c
    groups = w.num_groups
    dg = c // groups
    xc = torch.empty((groups, n, dg) if groups > 1 else (n, c))
    cpu_kernels.call("whitener_centre", x, ldx, xc, n, groups, dg)
    covar = torch.bmm(xc.transpose(1, 2), xc) if groups > 1 else torch.mm(xc.t(), xc)
    # the metric, and the next probability written into the device tensor (max above the limit)
    cpu_kernels.call("whitener_metric", covar, groups, dg, float(w.whitening_limit), ctypes.addressof(_info),
                     prob, w.min_prob, w.max_prob)
    if _info[1] == 0.0:                         # below the limit
        return grad
    if groups > 1:
        half = torch.bmm(xc, covar)
        out = torch.empty((n, c))
    else:
        half = out = torch.mm(xc, covar)
    cpu_kernels.call("whitener_add", half, grad, ldg, out, c, n, groups, dg, float(w.grad_scale))
    return rows_as(out, grad, in_order)


def _centred_covariance(x: torch.Tensor, num_groups: int) -> tuple[torch.Tensor, torch.Tensor]:
    """xc (groups, frames, d), x centred per group, and C = xc^T xc (groups, d, d), in float32."""
    xf = x.detach().float()
    channels = xf.shape[-1]
    per_group = channels // num_groups
    xc = xf.reshape(-1, num_groups, per_group).transpose(0, 1)
    xc = xc - xc.mean(dim=1, keepdim=True)
    return xc, torch.matmul(xc.transpose(1, 2), xc)


def _metric_parts(covar: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(mean_diag t, mean_sq s, t^2 + 1e-20) of :func:`_fused_backward`; the metric is s / that."""
    k = covar.shape[0] * covar.shape[1]
    mean_diag = torch.diagonal(covar, dim1=1, dim2=2).sum() / k
    mean_sq = (covar * covar).sum() / k
    return mean_diag, mean_sq, mean_diag * mean_diag + 1.0e-20


def _penalty_grad(xc: torch.Tensor, covar: torch.Tensor,
                  shape: torch.Size) -> tuple[torch.Tensor, torch.Tensor]:
    """dM/dx in ``shape`` and the metric M from :func:`_centred_covariance`'s (xc, C)
    (the closed form in :func:`_fused_backward`'s docstring)."""
    d_covar, metric = _covariance_grad(covar)
    penalty_grad = torch.matmul(xc, d_covar).mul_(2.0)           # (groups, frames, d)
    return penalty_grad.transpose(0, 1).reshape(shape), metric


def _covariance_grad(covar: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """dM/dC (groups, d, d) and the metric M from C (the closed form in
    :func:`_fused_backward`'s docstring); dM/dx is 2 xc dM/dC."""
    mean_diag, mean_sq, den = _metric_parts(covar)
    k = covar.shape[0] * covar.shape[1]
    d_covar = covar * (2.0 / (k * den))
    d_covar.diagonal(dim1=1, dim2=2).sub_(2.0 * mean_sq * mean_diag / (k * den * den))
    return d_covar, mean_sq / den


class _PredrawnWhitenerFunction(torch.autograd.Function):
    """Identity; the backward adds the penalty gradient (scaled to grad_scale * ||grad||)
    times ``flag`` (0/1, decided in the forward)."""

    @staticmethod
    def forward(ctx, x, covar, flag, grad_scale, num_groups):  # type: ignore[override]
        ctx.save_for_backward(x, covar, flag, grad_scale)
        ctx.num_groups = num_groups
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        x, covar, flag, grad_scale = ctx.saved_tensors
        with torch.autocast(x.device.type, enabled=False):
            xc, _ = _centred_covariance(x, ctx.num_groups)
            penalty_grad, _ = _penalty_grad(xc, covar, x.shape)
            scale = (grad_scale * flag).float() * grad.float().norm() / (penalty_grad.norm() + 1.0e-20)
            return grad + (penalty_grad * scale).to(grad.dtype), None, None, None, None


class Whitener(nn.Module):
    """Keeps the feature covariance from being dominated by a few eigenvalues."""

    def __init__(self, num_groups: int = 1, whitening_limit: FloatLike = 10.0,
                 prob: float | tuple[float, float] = (0.025, 0.25), grad_scale: FloatLike = 0.01):
        super().__init__()
        if num_groups < 1:
            raise ValueError(f"Whitener num_groups must be >= 1, got {num_groups}")
        if float(whitening_limit) < 1.0:
            raise ValueError(f"Whitener whitening_limit must be >= 1 (1 = perfectly white), "
                             f"got {float(whitening_limit)}")
        if isinstance(prob, (int, float)):
            prob = (float(prob), float(prob))
        if not 0.0 < prob[0] <= prob[1] <= 1.0:
            raise ValueError(f"Whitener prob must satisfy 0 < min <= max <= 1, got {prob}")
        self.num_groups = num_groups
        self.whitening_limit = whitening_limit
        self.grad_scale = grad_scale
        self.min_prob, self.max_prob = prob
        self.prob = self.max_prob

    @property
    def prob(self) -> float:
        """The probability this Whitener acts with now (reads the device value: a host sync;
        the training step itself never calls it)."""
        return self._prob if self._prob_t is None else float(self._prob_t)

    @prob.setter
    def prob(self, value: float) -> None:
        self._prob = float(value)
        self._prob_t = None          # made on the device by the next backward (torch.full: no copy)
        self._ceiling = max(self.max_prob, self._prob)

    def _prob_tensor(self, device: torch.device) -> torch.Tensor:
        if self._prob_t is None or self._prob_t.device != device:
            self._prob_t = torch.full((), self.prob, dtype=torch.float64, device=device)
            self._min_t = torch.full((), self.min_prob, dtype=torch.float64, device=device)
            self._max_t = torch.full((), self.max_prob, dtype=torch.float64, device=device)
        return self._prob_t

    #: take the step's draw from :meth:`decide` (drawn before a compiled region runs)
    predrawn = False
    _decision: torch.Tensor | None = None

    def decide(self, device: torch.device) -> None:
        """The step's draw (the one the forward makes), limit and grad_scale, as float64."""
        self._prob_tensor(device)
        values = [random.random(), float(self.whitening_limit), float(self.grad_scale)]
        self._decision = fill_decision(self._decision, values, device)

    def _forward_predrawn(self, x: torch.Tensor) -> torch.Tensor:
        draw, limit, grad_scale = self._decision.unbind()
        with torch.no_grad(), torch.autocast(x.device.type, enabled=False):
            _, covar = _centred_covariance(x, self.num_groups)
            _, mean_sq, den = _metric_parts(covar)
            metric = mean_sq / den
            prob = self._prob_t
            acting = prob >= draw
            above = ~(metric < limit.float())
            prob.copy_(torch.where(acting, torch.where(above, self._max_t, self._min_t), prob))
            flag = (acting & above).float()
        return _PredrawnWhitenerFunction.apply(x, covar, flag, grad_scale, self.num_groups)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.predrawn and self.training:
            if not x.requires_grad:
                return x
            if x.shape[-1] % self.num_groups:
                raise ValueError(f"Whitener: {x.shape[-1]} channels not divisible by "
                                 f"num_groups={self.num_groups}")
            return self._forward_predrawn(x)
        # The draw happens on the host as before; whether it falls within the probability
        # (min or max, set on the device by the metric) is decided in the backward, so the
        # op is applied whenever the draw is within the largest probability it can have.
        if not self.training or not x.requires_grad or float(self.grad_scale) == 0.0:
            return x
        draw = random.random()
        if draw > self._ceiling:
            return x
        return _WhitenerFunction.apply(x, self, draw)

    def extra_repr(self) -> str:
        return f"num_groups={self.num_groups}"


def whitener_probs(model: nn.Module) -> dict[str, float]:
    """The probability each Whitener of ``model`` acts with now, by module name: training state
    (its backward pass sets it), which a checkpoint must hold for a resumed run to repeat."""
    return {name: float(m.prob) for name, m in model.named_modules() if isinstance(m, Whitener)}


def load_whitener_probs(model: nn.Module, probs: dict[str, float]) -> None:
    """Set the Whiteners' probabilities saved by :func:`whitener_probs` (names not found are an error)."""
    modules = dict(model.named_modules())
    for name, prob in probs.items():
        m = modules.get(name)
        if not isinstance(m, Whitener):
            raise KeyError(f"no Whitener named {name!r} in the model")
        m.prob = float(prob)


def make_whitener(*, enabled: bool = True, **kwargs) -> nn.Module:
    """A Whitener, or an identity when the ``whitener`` switch is off."""
    return Whitener(**kwargs) if enabled else nn.Identity()
