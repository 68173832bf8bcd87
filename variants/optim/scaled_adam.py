"""ScaledAdam (paper section 3.5, Algorithm 1 of appendix A.1).

For every non-scalar parameter tensor theta, at step t (descent form of Algorithm 1):

    g   = grad,  h = sum(g * theta)                      (gradient of the tensor's scale)
    r   = RMS(theta_{t-1})
    m   = b1 m + (1 - b1) g,      v = b2 v + (1 - b2) g^2
    n   = b1 n + (1 - b1) h,      w = b2 w + (1 - b2) h^2
    c   = sqrt(1 - b2^t) / (1 - b1^t)
    theta <- theta - lr r c m / (sqrt(v) + eps)                 (update scaled by the RMS)
                   - eta lr c n / (sqrt(w) + eps) * theta       (learning the scale)

What the authors' implementation adds and training depends on (all here):

- limits on the parameter RMS: ``r`` is taken as at least ``param_min_rms``
  (1e-5) for scaling the update; below that RMS the scale is not updated; the
  scale update never takes the RMS above ``param_max_rms`` (3.0); the relative
  scale change per step is clipped to +-``max_scale_step`` (0.1);
- scalar (1-element) parameters have no scale to learn: they get plain Adam
  with lr scaled by ``eta`` and are clamped to +-``scalar_max`` (10);
- gradient clipping relative to the recent median gradient norm
  (:mod:`variants.optim.grad_clipping`, clipping scale 2.0); ``last_clip``
  holds the latest clipped step (with the parameter that dominated it);
- the "efficient implementation": the paper batches same-shape tensors; here
  the step is a few multi-tensor (``torch._foreach_*``) operations over all
  tensors of a group sharing device and dtype (any shapes, and no copying of
  parameters into and out of stacks), with the per-tensor scalars (RMS, scale
  moments, step sizes) computed as one small stacked vector; the outcome is
  the same as a per-tensor loop. On the CPU (float32/float64, fast paths on,
  see :mod:`variants.fast_paths`) the elementwise part of each tensor's update
  is one call of torch's fused AdamW kernel instead, with the tensor's step
  size as lr and its scale change as weight decay (:meth:`ScaledAdam.
  _fused_tensor_update`), and the buckets are built once and reused; the
  multi-tensor step stays as the reference (``fast_paths.reference_paths()``).
  On one thread with float32 tensors (:func:`variants.components.cpu_kernels.
  usable`) a bucket's whole step is two C calls instead (``csrc/scaled_adam.c``):
  the per-tensor RMS, clipping-norm terms and ``sum(g * theta)`` before the
  clipping decision, then the scale moments, the limits and the Adam update in
  one pass per tensor (:meth:`ScaledAdam._c_update`), within float32 roundings
  of the torch fused path.

Where the paper and the authors' code differ, the paper is followed: the scale
is learned every step (the authors' code does it every 4 steps), and momentum
is on the gradient with Adam's bias corrections, as in Algorithm 1. The
algorithm's "theta + delta" is read as descent (theta - delta).

Parameters may be passed with names (``model.named_parameters()`` or groups of
``(name, param)``); the names are used in the clipping diagnostics.
State per parameter: ``step``, ``exp_avg`` (m), ``exp_avg_sq`` (v),
``scale_exp_avg`` (n) and ``scale_exp_avg_sq`` (w) for non-scalars; the
clipping state is saved under the ``"clipping"`` key of ``state_dict()``.
"""
from __future__ import annotations

import ctypes
import logging
import math
import operator
from itertools import chain, repeat
from typing import Any, Callable, Iterable

import torch
from torch import Tensor
from torch.optim import Optimizer

from .. import fast_paths
from ..components import cpu_kernels
from .grad_clipping import ClippingEvent, MedianGradClipping

log = logging.getLogger(__name__)

SCALED_ADAM_DEFAULTS: dict[str, Any] = {
    "lr": 0.045, "betas": (0.9, 0.98), "eta": 0.1, "eps": 1e-8,
    "param_min_rms": 1e-5, "param_max_rms": 3.0, "max_scale_step": 0.1, "scalar_max": 10.0,
}


def _check_hyperparameters(lr: float, betas: tuple[float, float], eta: float, eps: float,
                           param_min_rms: float, param_max_rms: float, max_scale_step: float,
                           scalar_max: float) -> None:
    def positive(name: str, value: Any) -> None:
        if isinstance(value, bool) or not isinstance(value, (int, float)) \
                or not math.isfinite(value) or value < 0:
            raise ValueError(f"ScaledAdam: {name} must be a finite number >= 0, got {value!r}")

    for name, value in (("lr", lr), ("eta", eta), ("eps", eps), ("param_min_rms", param_min_rms),
                        ("param_max_rms", param_max_rms), ("max_scale_step", max_scale_step),
                        ("scalar_max", scalar_max)):
        positive(name, value)
    if (not isinstance(betas, (tuple, list)) or len(betas) != 2
            or not all(isinstance(b, (int, float)) and 0.0 <= b < 1.0 for b in betas)):
        raise ValueError(f"ScaledAdam: betas must be two numbers in [0, 1), got {betas!r}")
    if param_max_rms <= param_min_rms:
        raise ValueError(f"ScaledAdam: param_max_rms={param_max_rms} must exceed "
                         f"param_min_rms={param_min_rms}")


def _dot_products(xs: list[Tensor], ys: list[Tensor], dtype: torch.dtype) -> Tensor:
    """``sum(x * y)`` for each pair, as a vector of ``dtype`` on the tensors' device."""
    device = xs[0].device
    if device.type != "cpu":
        # a few kernels instead of one per tensor: products, one flat buffer, segment sums
        flat = torch.cat([t.reshape(-1) for t in torch._foreach_mul(xs, ys)]).to(dtype)
        lengths = torch.tensor([x.numel() for x in xs], device=device)
        return torch.segment_reduce(flat, "sum", lengths=lengths)
    if fast_paths.enabled():
        # one dot kernel per tensor: on the CPU a (1, n) x (n, 1) matrix product is ~5x
        # slower than torch.dot for the same sum (measured: 0.5 vs 2.9 ms for 200 tensors
        # of 1.2 M elements in all, one thread)
        # (0-dim results: stacked as they are)
        return torch.stack([torch.dot(x.reshape(-1), y.reshape(-1))
                            for x, y in zip(xs, ys)]).to(dtype)
    if hasattr(torch, "_foreach_mm"):               # one multi-tensor call where torch has it
        prods = torch._foreach_mm([x.reshape(1, -1) for x in xs], [y.reshape(-1, 1) for y in ys])
    else:
        prods = [torch.dot(x.reshape(-1), y.reshape(-1)) for x, y in zip(xs, ys)]
    return torch.stack([t.reshape(()) for t in prods]).to(dtype)


def _small_dtype(p: Tensor) -> torch.dtype:
    """dtype of the per-tensor scalars (scale moments, RMS): float32, float64 for float64."""
    return torch.float64 if p.dtype == torch.float64 else torch.float32


#: per-tensor state kept in float32 (float64 for float64 params) whatever the param dtype
_WIDE_STATE = ("scale_exp_avg", "scale_exp_avg_sq")


class _Bucket:
    """The tensors of one group that share device and dtype and kind (scalar or not)."""

    def __init__(self) -> None:
        self.params: list[Tensor] = []
        self.grads: list[Tensor] = []
        self.states: list[dict[str, Tensor]] = []
        self.names: list[str] = []
        self.rms: Tensor | None = None          # per-tensor RMS before the step
        self.norm_sq: Tensor | None = None      # per-tensor contribution to the clipping norm
        self.fused = False                      # updated by the fused CPU path
        self.sqrt_numel: Tensor | None = None   # cached sqrt(numel) per tensor (fast path)
        self.flat_views: list[bool] = []        # whether a tensor needs reshape(-1) for a dot
        self.clip_scale = 1.0                   # clipping factor left to the fused kernel
        self.c_table: "_CTable | None | bool" = None  # the C step's tables (False: not usable)
        self.c_step = False                     # this step runs in C (see ScaledAdam._c_table)
        self.partial = False                    # some grads are None (the C step skips them)


class _FlatScalars:
    """A bucket's per-tensor ``step``, ``scale_exp_avg`` and ``scale_exp_avg_sq`` as the
    elements of three vectors: the state keeps its 0-dim tensors (``state_dict()``
    and checkpoints are unchanged), but they are views of one vector each, so the
    step updates them in one operation instead of one per tensor (on the CPU, with
    ~200 tensors, the per-tensor copies and stacks took ~1 ms of a ~10 ms step)."""

    _KEYS = ("step", "scale_exp_avg", "scale_exp_avg_sq")

    def __init__(self, states: list[dict[str, Tensor]]) -> None:
        self.step, self.n, self.w = (torch.stack([st[k] for st in states]) for k in self._KEYS)
        views = [v.unbind(0) for v in (self.step, self.n, self.w)]
        for i, st in enumerate(states):
            for k, v in zip(self._KEYS, views):
                st[k] = v[i]
        self.views = list(zip(*views))
        self.views_step = list(views[0])

    def holds(self, states: list[dict[str, Tensor]]) -> bool:
        """Whether ``states`` are, in order, the tensors these vectors were built for."""
        return len(states) == len(self.views) and all(
            st["step"] is a and st["scale_exp_avg"] is b and st["scale_exp_avg_sq"] is c
            for st, (a, b, c) in zip(states, self.views))


class _CTable:
    """What the C step (``csrc/scaled_adam.c``) reads for one bucket of float32 CPU
    tensors: per tensor the addresses of the parameter, ``exp_avg``, ``exp_avg_sq``,
    its element count and the addresses of its ``step`` (and, for non-scalars,
    ``scale_exp_avg`` and ``scale_exp_avg_sq``: elements of :class:`_FlatScalars`),
    as one int64 array built once per plan (rebuilt if a parameter's storage moves);
    the gradients' addresses, filled in each step; and the statistics the first call
    writes (per tensor RMS, clipping-norm term, ``sum(g * theta)``; then their sum)."""

    TAB, STATS = 7, 3           # entries per tensor, as in scaled_adam.c

    def __init__(self, b: _Bucket, flat: "_FlatScalars | None") -> None:
        count = len(b.params)
        self.count, self.flat = count, flat
        self.param_ptrs = [p.data_ptr() for p in b.params]
        rows = []
        for i, (p, st) in enumerate(zip(b.params, b.states)):
            rows += [p.data_ptr(), st["exp_avg"].data_ptr(), st["exp_avg_sq"].data_ptr(),
                     p.numel(), st["step"].data_ptr()]
            rows += [0, 0] if flat is None else [st["scale_exp_avg"].data_ptr(),
                                                  st["scale_exp_avg_sq"].data_ptr()]
        self.tab = (ctypes.c_int64 * len(rows))(*rows)
        self.grads = (ctypes.c_int64 * count)()
        self.stats = (ctypes.c_double * (self.STATS * count + 1))()
        view = torch.frombuffer(self.stats, dtype=torch.float64)
        self.rms = view[0:-1:self.STATS]
        self.norm_sq = view[1:-1:self.STATS]
        # the state tensors whose memory the table points into
        self.keep = [(st["exp_avg"], st["exp_avg_sq"], st["step"]) for st in b.states]

    @staticmethod
    def suits(b: _Bucket, scalar: bool) -> bool:
        """Whether the bucket's parameters and state suit the C loops: float32 CPU
        tensors, contiguous, the moments shaped as their parameter."""
        f32 = torch.float32
        if not (b.fused and b.params[0].dtype == f32):
            return False
        for p, st in zip(b.params, b.states):
            if not p.is_contiguous() or st["step"].dtype != f32:
                return False
            for x in (st["exp_avg"], st["exp_avg_sq"]):
                if x.dtype != f32 or x.shape != p.shape or not x.is_contiguous():
                    return False
            if not scalar and any(st[k].dtype != f32 for k in _WIDE_STATE):
                return False
        return True


def _fused_available() -> bool:
    """Whether this torch has the fused Adam(W) kernels the CPU fast path calls."""
    return hasattr(torch, "_fused_adamw_") and hasattr(torch, "_fused_adam_")


_GRAD = operator.attrgetter("grad")


class _Plan:
    """The buckets of one step, kept for the next ones, with what they were built from."""

    def __init__(self, opt: "ScaledAdam", buckets: list[tuple[dict[str, Any], _Bucket, bool]]):
        self.state = opt.state
        self.groups = [(g, list(g["params"]), [p.grad is not None for p in g["params"]])
                       for g in opt.param_groups]
        self.buckets = buckets
        # the parameters' storage: a parameter given another dtype or device (``.data``
        # replaced, as Module.to does) has a new address
        self.checks = [(b.params, b.states, list(map(Tensor.data_ptr, b.params)),
                        None if b.params[0].is_cpu else b.params[0].device)
                       for _, b, _ in buckets]
        # where each bucket's tensors sit in their group's list (to pick their gradients)
        position = {id(p): (gi, i) for gi, g in enumerate(opt.param_groups)
                    for i, p in enumerate(g["params"])}
        self.picks = []
        for _, b, _ in buckets:
            gi = position[id(b.params[0])][0]
            self.picks.append((gi, [position[id(p)][1] for p in b.params]))

    def gradients(self, opt: "ScaledAdam", missing_ok: bool = False
                  ) -> tuple[list[list[Tensor | None]], bool] | None:
        """Each bucket's gradients, and whether some are None (only with ``missing_ok``:
        tensors of the buckets that have no gradient this step), or None if the buckets
        no longer describe the optimizer's parameters and state."""
        if opt.state is not self.state or len(opt.param_groups) != len(self.groups):
            return None
        group_grads, partial = [], False
        for group, (g, params, has_grad) in zip(opt.param_groups, self.groups):
            current = group["params"]
            if (group is not g or len(current) != len(params)
                    or not all(map(operator.is_, current, params))):
                return None
            # (maps of C functions: ~200 tensors are checked every step)
            grads = list(map(_GRAD, current))
            present = list(map(operator.is_not, grads, repeat(None)))
            if present != has_grad:
                # gradients missing where the plan has them (none new): usable only by
                # the C step, which skips those tensors
                if not missing_ok or any(map(operator.gt, present, has_grad)):
                    return None
                partial = True
            group_grads.append(grads)
        get = opt.state.get
        for params, states, ptrs, device in self.checks:
            if (list(map(Tensor.data_ptr, params)) != ptrs
                    or not all(map(operator.is_, map(get, params), states))
                    or (device is not None and any(p.device != device for p in params))):
                return None
        return [[group_grads[gi][i] for i in idx] for gi, idx in self.picks], partial


class ScaledAdam(Optimizer):
    """The paper's ScaledAdam with the authors' limits, clipping and batched step.

    Args:
        params: parameters, ``(name, parameter)`` pairs, or groups of either
            (dicts with ``"params"`` and optional per-group settings such as ``lr``).
        lr: peak learning rate (0.045 with Eden).
        betas: (beta1, beta2) = (0.9, 0.98).
        eta: lr factor of the parameter-scale update (0.1); also the lr factor of
            scalar parameters, as in the authors' implementation.
        eps: 1e-8.
        param_min_rms, param_max_rms: limits on each tensor's RMS (1e-5, 3.0).
        max_scale_step: limit on the relative scale change per step (0.1).
        scalar_max: scalar parameters are clamped to [-scalar_max, scalar_max].
        clipping_scale: clip to this times the recent median gradient norm
            (2.0); None disables clipping.
        clipping_update_period: steps between threshold estimates (100).
    """

    def __init__(self, params: Iterable[Any], lr: float = 0.045,
                 betas: tuple[float, float] = (0.9, 0.98), eta: float = 0.1, eps: float = 1e-8,
                 param_min_rms: float = 1e-5, param_max_rms: float = 3.0,
                 max_scale_step: float = 0.1, scalar_max: float = 10.0,
                 clipping_scale: float | None = 2.0, clipping_update_period: int = 100) -> None:
        _check_hyperparameters(lr, betas, eta, eps, param_min_rms, param_max_rms,
                               max_scale_step, scalar_max)
        defaults = dict(lr=lr, betas=tuple(betas), eta=eta, eps=eps, param_min_rms=param_min_rms,
                        param_max_rms=param_max_rms, max_scale_step=max_scale_step,
                        scalar_max=scalar_max)
        super().__init__(params, defaults)
        for group in self.param_groups:
            _check_hyperparameters(group["lr"], group["betas"], group["eta"], group["eps"],
                                   group["param_min_rms"], group["param_max_rms"],
                                   group["max_scale_step"], group["scalar_max"])
        self.clipping = MedianGradClipping(clipping_scale, clipping_update_period)

    # ------------------------------------------------------------------ state
    @property
    def last_clip(self) -> ClippingEvent | None:
        """The most recent step whose gradients were clipped (None if none yet)."""
        return self.clipping.last_event

    def __getstate__(self) -> dict[str, Any]:
        # torch's Optimizer pickles (and deep-copies) only defaults, state and groups:
        # the clipping state goes too; the caches of the fast path are rebuilt
        return {**super().__getstate__(), "clipping": self.clipping}

    def state_dict(self) -> dict[str, Any]:
        sd = super().state_dict()
        sd["clipping"] = self.clipping.state_dict()
        return sd

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        state_dict = dict(state_dict)
        clipping = state_dict.pop("clipping", None)
        # torch casts loaded state to each parameter's dtype; the scale moments must
        # stay float32 (float16 would overflow), so they are restored here
        wide = {k: {key: st[key] for key in _WIDE_STATE if key in st}
                for k, st in state_dict["state"].items() if isinstance(st, dict)}
        super().load_state_dict(state_dict)
        saved_ids = [i for g in state_dict["param_groups"] for i in g["params"]]
        params = [p for g in self.param_groups for p in g["params"]]
        for k, p in zip(saved_ids, params):
            for key, value in wide.get(k, {}).items():
                self.state[p][key] = value.to(device=p.device, dtype=_small_dtype(p), copy=True)
        if clipping is not None:
            self.clipping.load_state_dict(clipping)

    def _init_state(self, p: Tensor) -> dict[str, Tensor]:
        state = self.state[p]
        if state and state["exp_avg"].device != p.device:
            # the model moved after the state was created or loaded: follow it
            for key, value in state.items():
                if key != "step":
                    state[key] = value.to(p.device)
        if not state:
            # the step count stays on the CPU (as torch's Adam keeps it), so bias
            # corrections need no device round trip
            state["step"] = torch.zeros((), dtype=torch.float32)
            state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            if p.numel() > 1:
                # float32 (float64 for float64 params) whatever the parameter's dtype:
                # h^2 overflows float16
                state["scale_exp_avg"] = torch.zeros((), dtype=_small_dtype(p), device=p.device)
                state["scale_exp_avg_sq"] = torch.zeros((), dtype=_small_dtype(p), device=p.device)
        return state

    def _flat_scalars(self, group: dict[str, Any], b: _Bucket) -> "_FlatScalars | None":
        """The bucket's per-tensor scalars as three vectors (CPU tensors only), built
        once and rebuilt when the state's tensors were replaced (a loaded checkpoint,
        a move to another device, another set of tensors with gradients)."""
        if b.params[0].device.type != "cpu":
            return None
        cache: dict[Any, _FlatScalars] = self.__dict__.setdefault("_flat_cache", {})
        key = (id(group), b.params[0].dtype)
        flat = cache.get(key)
        if flat is None or not flat.holds(b.states):
            flat = cache[key] = _FlatScalars(b.states)
        return flat

    def _buckets(self) -> list[tuple[dict[str, Any], _Bucket, bool]]:
        """(group, bucket, is_scalar) for every parameter that has a gradient."""
        out: list[tuple[dict[str, Any], _Bucket, bool]] = []
        for gi, group in enumerate(self.param_groups):
            names = group.get("param_names")
            by_key: dict[tuple[Any, ...], _Bucket] = {}
            for i, p in enumerate(group["params"]):
                if p.grad is None or p.numel() == 0:            # nothing to update
                    continue
                name = names[i] if names else f"group{gi}.param{i}"
                if p.grad.is_sparse:
                    raise RuntimeError(f"ScaledAdam does not support sparse gradients ({name})")
                if torch.is_complex(p):
                    raise RuntimeError(f"ScaledAdam does not support complex parameters ({name})")
                scalar = p.numel() == 1
                key = (p.device, p.dtype, scalar)
                if key not in by_key:
                    by_key[key] = _Bucket()
                    out.append((group, by_key[key], scalar))
                b = by_key[key]
                b.params.append(p)
                b.grads.append(p.grad)
                b.states.append(self._init_state(p))
                b.names.append(name)
        return out

    # ------------------------------------------------------------------- step
    @torch.no_grad()
    def step(self, closure: Callable[[], Tensor] | None = None) -> Tensor | None:
        """One ScaledAdam update of every parameter that has a gradient.

        Device round trips: one for the clipping norm, one per bucket of
        non-scalar tensors for their RMS and scale moments.
        """
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        fast = _fused_available() and fast_paths.enabled()
        buckets = self._cached_buckets() if fast else self._buckets()
        if not buckets:
            return loss
        for group, b, scalar in buckets:
            b.clip_scale = 1.0
            table = self._c_table(group, b, scalar) if fast else None
            b.c_step = table is not None
            if table is not None:
                # per tensor RMS, clipping-norm term and sum(g * theta), in one call
                cpu_kernels.call("scaled_adam_stats", table.tab, table.grads, table.count,
                                 int(scalar), float(group["eta"]), table.stats)
                b.rms, b.norm_sq = table.rms, table.norm_sq
            elif not scalar:
                b.rms = self._rms(b, cached=fast)
        if self.clipping.enabled:
            self._clip(buckets, fused=fast)
        for group, b, scalar in buckets:
            if b.c_step:
                self._c_update(group, b, scalar)
            elif scalar and fast and b.fused:
                self._fused_scalar_update(group, b)
            elif scalar:
                self._scalar_update(group, b)
            elif fast and b.fused:
                self._fused_tensor_update(group, b)
            else:
                self._tensor_update(group, b)
        return loss

    @staticmethod
    def _rms(b: _Bucket, cached: bool = False) -> Tensor:
        """Each tensor's RMS (before the step), as a vector of the bucket's small dtype."""
        small = _small_dtype(b.params[0])
        if cached and b.sqrt_numel is not None:
            sqrt_numel = b.sqrt_numel
        else:
            sqrt_numel = torch.tensor([p.numel() for p in b.params], dtype=small,
                                      device=b.params[0].device).sqrt()
            if cached:
                b.sqrt_numel = sqrt_numel
        return torch.stack(torch._foreach_norm(b.params)).to(small) / sqrt_numel

    # ---------------------------------------------------------- CPU fast path
    def _cached_buckets(self) -> list[tuple[dict[str, Any], _Bucket, bool]]:
        """:meth:`_buckets`, built once and reused while nothing it depends on changed
        (the groups and their parameters, which of them have gradients, the parameters'
        storage addresses, hence dtype and device, the state's dicts); only the gradients
        are fetched anew each step. Building the buckets took ~1 ms of a ~9 ms step
        (~200 tensors, one CPU thread); this check takes ~0.1 ms, ~0.5 ms right after a
        backward pass (the tensors' Python objects no longer in cache; measured).

        A step where some tensors of the plan have no gradient (in the demo Zipformer
        one tensor, now and then) keeps the plan where the C step (:meth:`_c_table`)
        takes every bucket concerned: it skips those tensors, as :meth:`_buckets` would
        leave them out. Otherwise the plan is rebuilt (and again at the next step with
        all gradients: ~2.5 ms each, a third of the demo's steps, measured)."""
        plan: _Plan | None = self.__dict__.get("_plan")
        got = plan.gradients(self, missing_ok=True) if plan is not None else None
        if plan is not None and got is not None:
            grads, partial = got
            for (group, b, scalar), g in zip(plan.buckets, grads):
                b.grads = g
                b.partial = partial and any(map(operator.is_, g, repeat(None)))
                if b.partial and (not isinstance(b.c_table, _CTable)
                                  or self._c_table(group, b, scalar) is None):
                    break
            else:
                return plan.buckets
        buckets = self._buckets()
        for _, b, scalar in buckets:
            p = b.params[0]
            b.fused = p.device.type == "cpu" and p.dtype in (torch.float32, torch.float64)
            b.flat_views = [q.dim() == 1 and q.is_contiguous() for q in b.params]
        self.__dict__["_plan"] = _Plan(self, buckets)
        return buckets

    def _c_table(self, group: dict[str, Any], b: _Bucket, scalar: bool) -> _CTable | None:
        """The bucket's tables for the C step (``csrc/scaled_adam.c``), with this step's
        gradient addresses filled in; None where that step does not apply now (not
        :func:`cpu_kernels.usable <variants.components.cpu_kernels.usable>`: more than
        one thread, not float32, the fused paths or the library off; a layout the C
        loops do not take: the torch fused path runs). Built once per plan (which is
        rebuilt when a parameter's storage moved), and again if the bucket's
        :class:`_FlatScalars` were rebuilt."""
        table = b.c_table
        if table is False or not cpu_kernels.usable(b.params[0]):
            return None
        if b.partial:
            if not all(g is None or g.is_contiguous() for g in b.grads):
                return None
        elif not all(map(Tensor.is_contiguous, b.grads)):
            return None
        # a built table needs only the flat scalars' identity checked (their views are
        # the state's tensors while the plan holds: a rebuild would replace the vectors)
        flat = (None if scalar else
                table.flat if table is not None and self.__dict__["_flat_cache"].get(
                    (id(group), torch.float32)) is table.flat
                else self._flat_scalars(group, b))
        if table is None or table.flat is not flat:
            if not _CTable.suits(b, scalar):
                b.c_table = False
                return None
            table = b.c_table = _CTable(b, flat)
        table.grads[:] = ([0 if g is None else g.data_ptr() for g in b.grads] if b.partial
                          else list(map(Tensor.data_ptr, b.grads)))
        return table

    def _c_update(self, group: dict[str, Any], b: _Bucket, scalar: bool) -> None:
        """The bucket's update in one C call (after :meth:`_c_table` and the statistics
        call): :meth:`_fused_tensor_update` (non-scalars) or :meth:`_fused_scalar_update`
        (scalars) in the same arithmetic, within float32 roundings: per tensor the
        gradient scaled by the clipping factor, the step count, the scale moments, the
        scale change with the authors' limits (:meth:`_scale_change`), Adam's moments and
        the RMS-scaled update, in one pass over the tensor.

        Measured on the demo Zipformer (196 tensors, 1.2 M elements, one thread, the
        whole ``step()`` with clipping, medians, A/B in one process): inside real
        training steps 3.06-3.09 ms against 7.17-7.26 ms for the torch fused path (2
        runs of 48 steps each); repeated on the same gradients, caches warm, 1.62-1.68
        ms against 4.11-4.17 ms (3 runs of 200 steps each). In training the two C calls
        take ~2 ms of it (memory-bound: parameters, gradients and moments come back
        from memory after the backward pass), the Python checks and gradient
        addresses ~0.8 ms."""
        table = b.c_table
        assert isinstance(table, _CTable)
        beta1, beta2 = group["betas"]
        if scalar:
            cpu_kernels.call("scaled_adam_scalars", table.tab, table.grads, table.count,
                             float(b.clip_scale), float(group["lr"]), float(beta1),
                             float(beta2), float(group["eta"]), float(group["eps"]),
                             float(group["scalar_max"]))
        else:
            cpu_kernels.call("scaled_adam_update", table.tab, table.grads, table.count,
                             table.stats, float(b.clip_scale), float(group["lr"]), float(beta1),
                             float(beta2), float(group["eta"]), float(group["eps"]),
                             float(group["param_min_rms"]), float(group["param_max_rms"]),
                             float(group["max_scale_step"]))

    def _fused_tensor_update(self, group: dict[str, Any], b: _Bucket) -> None:
        """:meth:`_tensor_update` for float32/float64 CPU tensors: the same arithmetic, with
        the moments, the scale update and the RMS-scaled Adam update of each tensor done
        in one pass by torch's fused AdamW kernel (``torch._fused_adamw_``), one call per
        tensor with that tensor's step size as its lr and its scale change as a (decoupled,
        possibly negative) weight decay.

        In AdamW's terms: ``theta <- theta (1 - lr wd) - lr / (1 - b1^t) * m /
        (sqrt(v) / sqrt(1 - b2^t) + eps')``. With lr = the step size ``lr r``, wd = the
        relative scale change over it and ``eps' = eps / sqrt(1 - b2^t)`` this is
        Algorithm 1's ``theta (1 - shrink) - lr r c m / (sqrt(v) + eps)``, c = sqrt(1 -
        b2^t) / (1 - b1^t).

        Measured on the demo Zipformer (192 non-scalar tensors, 1.2 M elements, one
        thread, shared machine): the reference's seven multi-tensor passes (m, v twice, sqrt,
        eps, scale, update) ~3.5 ms, these fused calls 1.1-1.6 ms (one fused call over
        all tensors, were one lr possible, 0.8 ms). Flat buffers did not pay: one torch
        kernel over the whole bucket instead of a multi-tensor one saves ~0.2 ms per
        pass, while a flat copy of the gradients costs ~0.5 ms; for the 126 tensors of
        <= 4096 elements a flat update (gradients and parameters concatenated, segment
        sums, per-element factors, copies back) took 1.2 ms against 0.9 ms for their
        per-tensor calls, dot products and norms.
        """
        beta1, beta2 = group["betas"]
        lr, eps = group["lr"], group["eps"]
        min_rms = group["param_min_rms"]
        assert b.rms is not None
        exp_avgs = [st["exp_avg"] for st in b.states]
        exp_avg_sqs = [st["exp_avg_sq"] for st in b.states]
        if not all(map(Tensor.is_contiguous, chain(b.params, b.grads, exp_avgs, exp_avg_sqs))):
            # torch's fused CPU kernel walks raw memory, ignoring strides: it is right only
            # when all four share one layout; other layouts take the multi-tensor update
            if b.clip_scale != 1.0:
                torch._foreach_mul_(b.grads, b.clip_scale)
            self._tensor_update(group, b)
            return
        flat = self._flat_scalars(group, b)
        assert flat is not None
        # h = sum(g * theta) per tensor, before theta changes (1-D tensors need no reshape)
        one_d = b.flat_views
        grads = [g if d else g.reshape(-1) for g, d in zip(b.grads, one_d)]
        params = [p if d else p.reshape(-1) for p, d in zip(b.params, one_d)]
        h = torch.stack(list(map(torch.dot, grads, params))).to(flat.n.dtype)
        grad_scale = None
        if b.clip_scale != 1.0:
            # clipped: the kernel divides the gradients by 1 / scale (and stores them)
            h = h * b.clip_scale
            grad_scale = torch.tensor(1.0 / b.clip_scale, dtype=torch.float32)
        t = flat.step.add_(1.0).to(torch.float64)
        n = flat.n.mul_(beta1).add_((1.0 - beta1) * h)
        w = flat.w.mul_(beta2).add_((1.0 - beta2) * h * h)
        bc2_sqrt = (1.0 - beta2 ** t).sqrt()
        correction = bc2_sqrt / (1.0 - beta1 ** t)
        rms, n, w = torch.stack([b.rms.to(n.dtype), n, w]).to(torch.float64).unbind(0)
        shrink = self._scale_change(group, correction, rms, n, w)
        step_lr = lr * rms.clamp(min=min_rms)          # the tensor's lr before bias corrections
        # wd such that lr * wd = shrink (lr 0: the scale change is applied on its own)
        positive = step_lr > 0
        wd = torch.where(positive, shrink / torch.where(positive, step_lr, 1.0), 0.0)
        step_lrs, wds, epss = torch.stack([step_lr, wd, eps / bc2_sqrt]).tolist()
        if not bool(positive.all()):
            for p, s, ok in zip(b.params, shrink.tolist(), positive.tolist()):
                if not ok:
                    p.mul_(1.0 - s)
        fused = torch._fused_adamw_
        for p, g, m, v, step, lr_i, wd_i, eps_i in zip(b.params, b.grads, exp_avgs, exp_avg_sqs,
                                                        flat.views_step, step_lrs, wds, epss):
            fused([p], [g], [m], [v], [], [step], lr=lr_i,
                  beta1=beta1, beta2=beta2, weight_decay=wd_i, eps=eps_i, amsgrad=False,
                  maximize=False, grad_scale=grad_scale)

    def _clip(self, buckets: list[tuple[dict[str, Any], _Bucket, bool]],
              fused: bool = False) -> None:
        """Scale all gradients so the normalized norm stays under the threshold.

        ``fused``: the buckets the fused CPU path updates get the factor as
        ``b.clip_scale`` instead; that path's kernel scales their gradients (in
        place, as here) in the pass that reads them. So do the buckets of the C step
        (also for the factor 0: it zeroes them), whose norms its first call computed."""
        device = buckets[0][1].params[0].device
        sums, c_sum = [], 0.0
        for group, b, scalar in buckets:
            if b.c_step:            # the C step's statistics: b.norm_sq and their sum
                table = b.c_table
                assert isinstance(table, _CTable)
                c_sum += table.stats[_CTable.STATS * table.count]
                continue
            gnorm = torch.stack(torch._foreach_norm(b.grads)).float()
            weight = group["eta"] if scalar else b.rms.float()
            b.norm_sq = (gnorm * weight) ** 2
            sums.append(b.norm_sq.sum().to(device))
        if sums:
            c_sum += float(torch.stack(sums).sum())              # the one round trip
        norm = math.sqrt(c_sum)
        scale = self.clipping.scale_for(norm)
        if scale >= 1.0:
            return
        event = self.clipping.last_event
        assert event is not None
        # the tensor that contributed most to the norm, for the report
        best_share, best_name = -1.0, ""
        for _, b, _ in buckets:
            share, idx = (b.norm_sq / (norm ** 2 if norm > 0 else 1.0)).max(dim=0)
            if share.item() > best_share:
                best_share, best_name = share.item(), b.names[int(idx)]
        event.dominant_param, event.dominant_share = best_name, best_share
        if scale < 0.5:
            log.warning("ScaledAdam step %d: gradient norm %.3e is over the threshold %.3e, "
                        "scaling gradients by %.3g; %s contributes %.0f%% of the norm",
                        event.step, norm, event.threshold, scale, best_name, 100 * best_share)
        for _, b, _ in buckets:
            if b.c_step:            # the C update scales (or zeroes) the gradients
                b.clip_scale = scale
            elif scale == 0.0:
                torch._foreach_zero_(b.grads)
            elif fused and b.fused:
                b.clip_scale = scale
            else:
                torch._foreach_mul_(b.grads, scale)

    @staticmethod
    def _moments(group: dict[str, Any], b: _Bucket, flat_steps: Tensor | None = None
                 ) -> tuple[list[Tensor], list[Tensor], Tensor]:
        """Update m and v in place; return them and the bias corrections (CPU float64).

        ``flat_steps``: the bucket's step counts as one vector whose elements are the
        state's ``step`` tensors (:class:`_FlatScalars`), counted in one operation."""
        beta1, beta2 = group["betas"]
        exp_avg = [s["exp_avg"] for s in b.states]
        exp_avg_sq = [s["exp_avg_sq"] for s in b.states]
        torch._foreach_lerp_(exp_avg, b.grads, 1.0 - beta1)
        torch._foreach_mul_(exp_avg_sq, beta2)
        torch._foreach_addcmul_(exp_avg_sq, b.grads, b.grads, value=1.0 - beta2)
        if flat_steps is not None:
            t = flat_steps.add_(1.0).to(torch.float64)
        else:
            steps = [s["step"] for s in b.states]
            torch._foreach_add_(steps, 1.0)
            t = torch.stack(steps).to("cpu", torch.float64)
        correction = (1.0 - beta2 ** t).sqrt() / (1.0 - beta1 ** t)
        return exp_avg, exp_avg_sq, correction

    @staticmethod
    def _apply(group: dict[str, Any], b: _Bucket, exp_avg: list[Tensor], exp_avg_sq: list[Tensor],
               step_size: list[float]) -> None:
        """params -= step_size * m / (sqrt(v) + eps), one step size per tensor."""
        denom = torch._foreach_sqrt(exp_avg_sq)
        torch._foreach_add_(denom, group["eps"])
        torch._foreach_addcdiv_(b.params, exp_avg, denom, [-x for x in step_size])

    @staticmethod
    def _scale_change(group: dict[str, Any], correction: Tensor, rms: Tensor, n: Tensor,
                      w: Tensor) -> Tensor:
        """Each tensor's relative scale change (positive shrinks) from its scale moments n,
        w and RMS (float64 vectors), with the authors' limits."""
        shrink = group["eta"] * group["lr"] * correction * n / (w.sqrt() + group["eps"])
        shrink = shrink.masked_fill(rms < group["param_min_rms"], 0.0)
        shrink = shrink.clamp(-group["max_scale_step"], group["max_scale_step"])
        return torch.maximum(shrink, 1.0 - group["param_max_rms"] / rms)

    def _tensor_update(self, group: dict[str, Any], b: _Bucket) -> None:
        beta1, beta2 = group["betas"]
        lr = group["lr"]
        min_rms = group["param_min_rms"]
        assert b.rms is not None
        flat = self._flat_scalars(group, b) if fast_paths.enabled() else None
        if flat is not None:
            h = _dot_products(b.grads, b.params, flat.n.dtype)     # before theta changes
            exp_avg, exp_avg_sq, correction = self._moments(group, b, flat.step)
            n = flat.n.mul_(beta1).add_((1.0 - beta1) * h)
            w = flat.w.mul_(beta2).add_((1.0 - beta2) * h * h)
        else:
            n_list = [s["scale_exp_avg"] for s in b.states]
            w_list = [s["scale_exp_avg_sq"] for s in b.states]
            h = _dot_products(b.grads, b.params, n_list[0].dtype)      # before theta changes
            exp_avg, exp_avg_sq, correction = self._moments(group, b)
            n = torch.stack(n_list) * beta1 + (1.0 - beta1) * h
            w = torch.stack(w_list) * beta2 + (1.0 - beta2) * h * h
            torch._foreach_copy_(n_list, list(n.unbind(0)))
            torch._foreach_copy_(w_list, list(w.unbind(0)))
        # the per-tensor scalars, fetched once, in float64 on the CPU
        rms, n, w = torch.stack([b.rms.to(n.dtype), n, w]).to("cpu", torch.float64).unbind(0)
        shrink = self._scale_change(group, correction, rms, n, w)
        step_size = lr * rms.clamp(min=min_rms) * correction
        torch._foreach_mul_(b.params, (1.0 - shrink).tolist())
        self._apply(group, b, exp_avg, exp_avg_sq, step_size.tolist())

    def _fused_scalar_update(self, group: dict[str, Any], b: _Bucket) -> None:
        """:meth:`_scalar_update` for float32/float64 CPU tensors: Adam with lr ``eta lr``
        as one fused Adam call per step count (all tensors, unless some skipped steps),
        ``eps' = eps / sqrt(1 - b2^t)`` as in :meth:`_fused_tensor_update` (0.19 -> 0.05
        ms for the demo Zipformer's 5 scalars)."""
        beta1, beta2 = group["betas"]
        steps = [st["step"] for st in b.states]
        torch._foreach_add_(steps, 1.0)
        by_step: dict[float, list[int]] = {}
        for i, t in enumerate(torch.stack(steps).tolist()):
            by_step.setdefault(t, []).append(i)
        grads = b.grads
        if b.clip_scale != 1.0:
            grads = [g.mul_(b.clip_scale) for g in grads]
        for t, idx in by_step.items():
            torch._fused_adam_([b.params[i] for i in idx], [grads[i] for i in idx],
                               [b.states[i]["exp_avg"] for i in idx],
                               [b.states[i]["exp_avg_sq"] for i in idx], [],
                               [steps[i] for i in idx], lr=group["lr"] * group["eta"],
                               beta1=beta1, beta2=beta2, weight_decay=0.0,
                               eps=group["eps"] / math.sqrt(1.0 - beta2 ** t), amsgrad=False,
                               maximize=False)
        torch._foreach_clamp_min_(b.params, -group["scalar_max"])
        torch._foreach_clamp_max_(b.params, group["scalar_max"])

    def _scalar_update(self, group: dict[str, Any], b: _Bucket) -> None:
        exp_avg, exp_avg_sq, correction = self._moments(group, b)
        self._apply(group, b, exp_avg, exp_avg_sq,
                    (group["lr"] * group["eta"] * correction).tolist())
        torch._foreach_clamp_min_(b.params, -group["scalar_max"])
        torch._foreach_clamp_max_(b.params, group["scalar_max"])
