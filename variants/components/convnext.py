"""The ConvNeXt layer of Conv-Embed (paper section 3.1): depth-wise 7x7
convolution, point-wise convolution to 3x the channels, SwooshL, point-wise
convolution back, with a residual connection. In training the residual branch
is dropped per utterance at a scheduled rate (authors: 0.2 falling to 0.015).

CPU training (channels-last) runs the branch as :class:`_FusedHiddenCPU`, with C loops
(csrc/convnext.c) for its elementwise work and depth-wise convolution on one thread."""
from __future__ import annotations

import torch
from torch import nn

from .. import fast_paths
from .activation import create_activation
from . import cpu_kernels, swoosh
from .balancer import Balancer, add_extra_gradient_2d, apply_balancer, make_balancer
from .scaled_linear import scaled_conv2d
from .scheduled_float import FloatLike, ScheduledFloat
from .scratch import scratch
from .swoosh import SwooshL
from .whitener import make_whitener


def _keep(t: torch.Tensor) -> torch.Tensor:
    return t


def _chunks(n: int, parts: int = 4) -> list[slice]:
    size = max(1, -(-n // parts))
    return [slice(i, min(n, i + size)) for i in range(0, n, size)]


def _pieces(b: int, t: int, halo: int, parts: int = 4) -> list[tuple[slice, slice, slice]]:
    """About ``parts`` pieces of a (B, C, T, F) tensor: slices of the batch, and when there
    are fewer than ``parts`` of those, of time too. Each piece is (batch, time to compute
    on: the piece's frames and ``halo`` more each side, kept frames within that)."""
    batches = _chunks(b, parts)
    pieces = []
    for bs in batches:
        for ts in _chunks(t, -(-parts // len(batches))):
            lo, hi = max(0, ts.start - halo), min(t, ts.stop + halo)
            pieces.append((bs, slice(lo, hi), slice(ts.start - lo, ts.stop - lo)))
    return pieces


class _LeanHidden(torch.autograd.Function):
    """``pointwise_conv2(activation(balancer(pointwise_conv1(depthwise_conv(x)))))`` keeping only ``x``.

    The 3x-wide hidden layer is the largest thing Conv-Embed would keep for the
    backward pass (its activation's output, and its derivative as a byte), and
    the depth-wise convolution's output another tensor of ``x``'s size. Here
    the backward pass recomputes them in a few pieces (a quarter each: slices
    of the batch, or of time with the depth-wise kernel's reach of frames more
    each side when the batch is small), so it never holds the whole hidden layer; with the hidden Balancer
    acting this step (``balance``: its :meth:`Balancer.draw`), the
    pre-activation is recomputed whole, as the Balancer's gradient needs
    statistics over all of it. The forward values are those of the modules
    applied in turn.
    """

    @staticmethod
    def forward(ctx, x, w0, b0, w1, b1, w2, b2, module, balance):  # type: ignore[override]
        dev = x.device.type
        ctx.autocast = (torch.is_autocast_enabled(dev), torch.get_autocast_dtype(dev))
        ctx.module, ctx.balance = module, balance
        ctx.save_for_backward(x, w0, b0, w1, b1, w2, b2)
        h = module.pointwise_conv1(module.depthwise_conv(x))
        # the activation's training path (its exact values); what its throwaway graph
        # keeps is freed at once, so outer saved-tensor hooks (counters) do not see it
        with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(_keep, _keep):
            a = module.activation(h.detach().requires_grad_(True)).detach()
        del h
        return module.pointwise_conv2(a)

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        x, *weights = ctx.saved_tensors
        m, balance = ctx.module, ctx.balance
        leaves = [t.detach().requires_grad_(True) for t in weights]
        w0, b0, w1, b1, w2, b2 = leaves

        def pre(t):     # depth-wise, then the first point-wise convolution
            return m.pointwise_conv1._conv_forward(m.depthwise_conv._conv_forward(t, w0, b0), w1, b1)

        def post(t):    # the activation, then the second point-wise convolution
            return m.pointwise_conv2._conv_forward(m.activation(t), w2, b2)

        need_x = ctx.needs_input_grad[0]
        grad_x = torch.empty_like(x) if need_x else None
        enabled, dtype = ctx.autocast
        with torch.enable_grad(), torch.autocast(x.device.type, dtype=dtype, enabled=enabled):
            if balance is None:
                if need_x:
                    grad_x.zero_()
                for bs, ts, keep in _pieces(x.shape[0], x.shape[2], m.padding[0]):
                    xi = x[bs, :, ts].detach().requires_grad_(need_x)
                    post(pre(xi))[:, :, keep].backward(grad[bs, :, ts][:, :, keep])
                    if need_x:
                        grad_x[bs, :, ts] += xi.grad
            else:
                with torch.no_grad():
                    h = pre(x)
                grad_h = torch.empty_like(h)
                for s in _chunks(x.shape[0]):
                    hi = h[s].detach().requires_grad_(True)
                    post(hi).backward(grad[s])
                    grad_h[s] = hi.grad
                hh = h.detach().requires_grad_(True)
                del h
                apply_balancer(hh, balance).backward(grad_h)
                grad_h = hh.grad
                del hh
                for s in _chunks(x.shape[0]):
                    xi = x[s].detach().requires_grad_(need_x)
                    pre(xi).backward(grad_h[s])
                    if need_x:
                        grad_x[s] = xi.grad
        grads = [None if t.grad is None else t.grad.to(o.dtype) for t, o in zip(leaves, weights)]
        return (grad_x, *grads, None, None)


def channels_first(t: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """A channels-last (B, C, T, F) ``t`` as a contiguous (C, B, T, F) copy (into ``out``, a
    contiguous tensor of C x B T F elements, if given): one 2-D transpose of its (B T F, C)
    memory (a 4-D permuted copy is several times slower)."""
    b, c, t_, f = t.shape
    m = t.permute(0, 2, 3, 1).reshape(b * t_ * f, c).t()
    out = m.contiguous() if out is None else out.view(c, b * t_ * f).copy_(m)
    return out.view(c, b, t_, f)


def depthwise_weight_grad(x_cf: torch.Tensor, grad_cf: torch.Tensor, kernel: tuple[int, int]) -> torch.Tensor:
    """The weight gradient (C, 1, kh, kw) of a depth-wise convolution with odd ``kernel`` and
    'same' zero padding, from its input ``x_cf`` and the gradient of its output ``grad_cf``,
    both contiguous channels-first (C, B, T, F) (:func:`channels_first`).

    dW[c, i, j] = sum_{b,t,f} g[b,c,t,f] x[b,c,t+s,f+j-pw] with s = i - ph. For each time
    shift one batched matrix product over (channel, utterance), on the frames where
    t + s lies inside the utterance (so no padded copy), gives A_s[f, f'] = sum_t g[t,f]
    x[t+s, f'] (F x F), and dW[c, i, j] = sum_b sum_f A_s[f, f+j-pw]: ~200 MFLOP of small
    matrix products and two transposes instead of mkldnn's depth-wise weight gradient
    (5-6 against 8-10 ms at 5 x 64 x 124 x 19, one thread). The same sums in another
    order (float32 roundings).
    """
    c, b, t, f = x_cf.shape
    kh, kw = kernel
    ph, pw = (kh - 1) // 2, (kw - 1) // 2
    xs = x_cf.view(c * b, t, f)
    gt = grad_cf.view(c * b, t, f).transpose(1, 2)                   # (C*B, F, T)
    out = scratch("depthwise_weight_grad", (kh, c * b, f, f), x_cf)
    for i in range(kh):
        s = i - ph
        t0, t1 = max(0, -s), min(t, t - s)
        if t1 > t0:
            torch.bmm(gt[:, :, t0:t1], xs[:, t0 + s:t1 + s], out=out[i])
        else:                                    # a shift past every frame
            out[i].zero_()
    # the sum over utterances as a product with ones (a strided sum over that axis is slow)
    a = torch.matmul(x_cf.new_ones(1, b), out.view(kh * c, b, f * f)).view(kh, c, f, f)
    a = torch.nn.functional.pad(a, (pw, pw))                         # (kh, C, F, F + 2 pw)
    w = f + 2 * pw
    diag = a.as_strided((kh, c, f, kw), (c * f * w, f * w, w + 1, 1), a.storage_offset())
    return diag.sum(2).transpose(0, 1).unsqueeze(1)                  # (C, 1, kh, kw)


class _FusedHiddenCPU(torch.autograd.Function):
    """``x + keep * pointwise_conv2(SwooshL(balancer(pointwise_conv1(depthwise_conv(x)))))``,
    ConvNeXt's residual branch with its layer drop (``keep``: 0/1 per utterance, or None for
    all 1) and residual, on the CPU in channels-last layout, with few passes over the
    3x-wide hidden layer (2.2 M elements in the demo's batches); the residual is added in
    place into the branch's output, and its gradient into the input's (no separate
    tensors for either).

    Forward: the depth-wise convolution (mkldnn); z = h - 4 = x W1^T + (b1 - 4) as one
    matrix product (the SwooshL shift folded into the bias); softplus(z) as log(1 + exp(z))
    (:func:`swoosh.softplus_unclamped`), the rounded derivative level in z's memory; a = softplus(z)
    - 0.08 z, which is SwooshL(h) + 0.355, so the constant is folded into the second
    bias: b2 - 0.355 W2 1. Backward: the matrix products' gradients (dW2 gets the
    constant back as -0.355 colsum(grad)), the derivative multiplied in place, the
    Balancer's extra gradient (when it acts this step: then h is kept) from per-channel
    sums of h in three passes (:func:`balancer.add_extra_gradient_2d`), and the depth-wise weight gradient
    from :func:`depthwise_weight_grad` (the input gradient from mkldnn). The same
    arithmetic as the modules applied in turn, within float32 roundings (the derivative
    levels bit for bit).

    With the C loops (:mod:`.cpu_kernels`, csrc/convnext.c; one thread) the elementwise
    work is one pass each around the matrix products (:func:`_c_forward`: the biases,
    SwooshL's value and the derivative's level as a byte, the layer drop with the
    residual; backward: the layer drop's factor with the bias sums, the level times the
    gradient with the bias sums), the depth-wise convolution and its input gradient (with
    the residual's gradient added) are a loop over the channels-last tensors, and so is
    the depth-wise weight and bias gradient (no transposed copies); within float32
    roundings of the torch path (a derivative level may move by one step where a rounding
    crosses a level boundary). There, when the layer drop drops some utterances and the
    hidden Balancer is idle, the branch runs on the kept utterances only, gathered into a
    smaller batch (the dropped ones' output is their input, their gradient the output's:
    what the branch would add is multiplied by 0; :func:`_kept_utterances`).
    """

    @staticmethod
    def forward(ctx, x, w0, b0, w1, b1, w2, b2, padding, balance, keep):  # type: ignore[override]
        ctx.padding, ctx.balance = padding, balance
        bsz, c, t, f = x.shape
        idx = _kept_utterances(x, keep, balance)
        if idx is None:
            out, saved = _branch_forward(x, w0, b0, w1, b1, w2, b2, padding, balance, keep)
            ctx.save_for_backward(*saved, w0, w1, w2, None)
            return out.view(bsz, t, f, c).permute(0, 3, 1, 2)
        # the layer drop leaves some utterances at their input: the branch runs on the others
        # only (what it would add to those is multiplied by 0), gathered into a smaller batch
        xm = x.permute(0, 2, 3, 1)                       # (B, T, F, C), contiguous
        out = xm.clone()
        saved = (None,) * 6
        if idx.numel():
            xs = xm[idx].permute(0, 3, 1, 2)
            out_s, saved = _branch_forward(xs, w0, b0, w1, b1, w2, b2, padding, None, None)
            out[idx] = out_s.view(-1, t, f, c)
        ctx.save_for_backward(*saved, w0, w1, w2, idx)
        return out.permute(0, 3, 1, 2)

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        x, dw, a, d, h, keep, w0, w1, w2, idx = ctx.saved_tensors
        grad = grad.contiguous(memory_format=torch.channels_last)         # also the residual's
        need_x = ctx.needs_input_grad[0]
        if idx is None:
            grads = _branch_backward(x, dw, a, d, h, keep, w0, w1, w2, grad, ctx.padding, ctx.balance,
                                     need_x)
            return (*grads, None, None, None)
        gm = grad.permute(0, 2, 3, 1)                    # (B, T, F, C), contiguous
        grad_x = gm.clone() if need_x else None          # the residual's gradient
        if not idx.numel():                              # every utterance dropped
            zeros = [torch.zeros_like(w) for w in (w0, w0[:, 0, 0, 0], w1, w1[:, 0, 0, 0], w2, w2[:, 0, 0, 0])]
            return (None if grad_x is None else grad_x.permute(0, 3, 1, 2), *zeros, None, None, None)
        gs = gm[idx].permute(0, 3, 1, 2)
        gx_s, *grads = _branch_backward(x, dw, a, d, h, None, w0, w1, w2, gs, ctx.padding, None, need_x)
        if need_x:
            grad_x[idx] = gx_s.permute(0, 2, 3, 1)
            grad_x = grad_x.permute(0, 3, 1, 2)
        return (grad_x, *grads, None, None, None)


def _kept_utterances(x: torch.Tensor, keep: torch.Tensor | None, balance) -> torch.Tensor | None:
    """The indices of the utterances whose branch the layer drop keeps, when the branch
    runs on those only: the C loops usable, some utterance dropped, and the hidden Balancer
    idle (its statistics are over every utterance's hidden layer); else None."""
    if keep is None or balance is not None or not cpu_kernels.usable(x):
        return None
    return keep.nonzero().view(-1)


def _branch_forward(x, w0, b0, w1, b1, w2, b2, padding, balance, keep):
    """:class:`_FusedHiddenCPU`'s forward for a channels-last ``x``: the branch with its
    layer drop plus the residual as an (N, C) matrix, and what its backward needs
    (x, the depth-wise output, a, the derivative level, h or None, keep)."""
    bsz, c, t, f = x.shape
    hidden = w1.shape[0]
    n = bsz * t * f
    if _depthwise_c_loop(x, w0, padding):
        # the depth-wise convolution as a C loop (csrc/convnext.c: 0.55 against mkldnn's
        # 0.67 ms at 5 x 64 x 114 x 19, one thread)
        dw = torch.empty_like(x)
        cpu_kernels.call("depthwise_conv7_cl", x, w0.reshape(c, -1).t().contiguous(), b0.contiguous(),
                         x, dw, bsz, t, f, c, w0.shape[2], 0)
    else:
        dw = torch.nn.functional.conv2d(x, w0, b0, padding=padding, groups=c)
        dw = dw.contiguous(memory_format=torch.channels_last)
    dwm = dw.permute(0, 2, 3, 1).reshape(n, c)
    w1m, w2m = w1.reshape(hidden, c), w2.reshape(c, hidden)
    # the C loops (csrc/convnext.c) where usable: the biases, SwooshL's value and level,
    # the layer drop and the residual each in one pass around the two matrix products
    c_loops = cpu_kernels.usable(x) and x.is_contiguous(memory_format=torch.channels_last)
    out, a, d, h = (_c_forward if c_loops else _torch_forward)(
        x, dwm, w1m, b1, w2m, b2, balance is not None, keep)
    return out, (x, dw, a, d, h, keep)


def _branch_backward(x, dw, a, d, h, keep, w0, w1, w2, grad, padding, balance, need_x):
    """:class:`_FusedHiddenCPU`'s backward from :func:`_branch_forward`'s saved tensors and
    the channels-last gradient of its output: the gradients of x (None unless ``need_x``),
    w0, b0, w1, b1, w2, b2."""
    bsz, c, t, f = x.shape
    hidden = w1.shape[0]
    n = bsz * t * f
    gm = grad.permute(0, 2, 3, 1).reshape(n, c)
    w1m, w2m = w1.reshape(hidden, c), w2.reshape(c, hidden)
    fused = cpu_kernels.usable(grad)
    if fused:
        # the layer drop's factor and the bias gradient in one pass (csrc/convnext.c)
        db2 = grad.new_empty(c)
        g2 = scratch("convnext.g2", (n, c), gm) if keep is not None else gm
        cpu_kernels.call("convnext_grad_out", gm, gm if keep is None else keep, g2, db2,
                         bsz, t * f, c, int(keep is not None))
    else:
        g2 = gm if keep is None else (gm.view(bsz, t * f, c) * keep.view(bsz, 1, 1)).view(n, c)
        db2 = g2.sum(0)
    dw2 = torch.mm(g2.t(), a).sub_(db2.unsqueeze(1), alpha=SWOOSH_L_CONSTANT)
    # the temporaries in scratch buffers kept between steps (no page faults)
    grad_h = torch.mm(g2, w2m, out=scratch("convnext.grad_h", (n, hidden), g2))
    if d.dtype == torch.uint8 and fused:
        # the derivative from its level (the C forward's byte), and the bias gradient in
        # the same pass unless the Balancer adds to the gradient first
        db1 = grad.new_empty(hidden)
        cpu_kernels.call("convnext_grad_levels", grad_h, d, db1, n, hidden, swoosh.LEVEL_STEP,
                         swoosh.DERIV_MIN, int(balance is None))
        fused_db1 = balance is None
    else:
        grad_h.mul_(swoosh.dequantize_deriv(d) if d.dtype == torch.uint8 else d)
        fused_db1 = False
    if balance is not None:
        limits, grad_scale, _ = balance
        add_extra_gradient_2d(h, grad_h, limits, grad_scale, out=grad_h)
    if not fused_db1:
        db1 = grad_h.sum(0)
    dw1 = torch.mm(grad_h.t(), dw.permute(0, 2, 3, 1).reshape(n, c))
    grad_dw = torch.mm(grad_h, w1m, out=scratch("convnext.grad_dw", (n, c), g2))   # (N, C)
    g4 = grad_dw.view(bsz, t, f, c).permute(0, 3, 1, 2)               # channels-last
    grad_x = None
    if need_x and fused and _depthwise_c_loop(x, w0, padding):
        # the input's gradient: the same C loop with the kernel flipped, the residual's
        # gradient added in the same pass (0.70 against 1.06 ms for mkldnn's and the add)
        grad_x = torch.empty_like(x)
        cpu_kernels.call("depthwise_conv7_cl", grad_dw, w0.flip(2, 3).reshape(c, -1).t().contiguous(),
                         grad.new_zeros(c), grad, grad_x, bsz, t, f, c, w0.shape[2], 1)
    elif need_x:
        grad_x = torch.ops.aten.convolution_backward(
            g4, x, w0, None, [1, 1], list(padding), [1, 1], False, [0, 0], c,
            [True, False, False])[0]
        grad_x = grad_x.contiguous(memory_format=torch.channels_last).add_(grad)
    if fused and c % 16 == 0 and x.is_contiguous(memory_format=torch.channels_last):
        # the depth-wise weight and bias gradients from the channels-last tensors as they
        # lie, in one call (csrc/convnext.c: 1.1 against 4.1 ms for the transposed copies
        # and batched products below at 5 x 64 x 114 x 19, one thread)
        dw0, db0 = w0.new_empty(w0.shape), grad.new_empty(c)
        cpu_kernels.call("depthwise_weight_grad_cl", x, grad_dw, dw0, db0, bsz, t, f, c,
                         w0.shape[2], w0.shape[3])
    else:
        db0 = grad_dw.sum(0)
        g_cf = scratch("convnext.grad_cf", (c, n), g2).copy_(grad_dw.t()).view(c, bsz, t, f)
        dw0 = depthwise_weight_grad(channels_first(x, scratch("convnext.x_cf", (c, n), x)), g_cf,
                                    tuple(w0.shape[2:]))
    return grad_x, dw0, db0, dw1.view_as(w1), db1, dw2.view_as(w2), db2


def _depthwise_c_loop(x: torch.Tensor, w: torch.Tensor, padding: tuple[int, int]) -> bool:
    """Whether the depth-wise convolution (and its input's gradient) runs as csrc/convnext.c's
    loop: the C loops usable, x channels-last, channels a multiple of 16, a kernel 7 wide
    with 'same' padding (ConvNeXt's)."""
    kh, kw = w.shape[2], w.shape[3]
    return (cpu_kernels.usable(x) and x.is_contiguous(memory_format=torch.channels_last)
            and x.shape[1] % 16 == 0 and kw == 7 and kh % 2 == 1
            and tuple(padding) == ((kh - 1) // 2, 3))


def _torch_forward(x, dwm, w1m, b1, w2m, b2, balanced, keep):
    """:class:`_FusedHiddenCPU`'s forward after the depth-wise convolution, in torch's
    operators: (the branch plus the residual (N, C), a, the derivative level, h if
    ``balanced``)."""
    bsz, c, t, f = x.shape
    n = bsz * t * f
    if not balanced:
        z, h = torch.addmm(b1 - SWOOSH_L_OFFSET, dwm, w1m.t()), None
    else:
        # the Balancer's statistics need h itself (the moments of h - 4 would cancel
        # in float32 for a channel of small values)
        h = torch.addmm(b1, dwm, w1m.t())
        z = h - SWOOSH_L_OFFSET
    a = swoosh.softplus_unclamped(z).add_(z, alpha=-0.08)
    d = swoosh.level_deriv(z, inplace=True)
    del z
    out = torch.addmm(b2 - SWOOSH_L_CONSTANT * w2m.sum(1), a, w2m.t())
    if keep is not None:                      # the layer drop: branch times 0/1 per utterance
        out.view(bsz, t * f, c).mul_(keep.view(bsz, 1, 1))
    out.add_(x.permute(0, 2, 3, 1).reshape(n, c))                    # the residual
    return out, a, d, h


def _c_forward(x, dwm, w1m, b1, w2m, b2, balanced, keep):
    """:func:`_torch_forward` with the C loops of csrc/convnext.c for a channels-last ``x``:
    the matrix products without their biases, then one pass over the hidden layer (its bias,
    SwooshL's value, the derivative's level as a byte (a quarter of the float's memory), h
    kept in place when ``balanced``; otherwise the product lives in a scratch buffer) and one
    over the output (its bias, the layer drop, the residual). Within float32 roundings of
    :func:`_torch_forward` (exp and log from libmvec; a derivative level may move by one
    step where a rounding crosses a level boundary)."""
    bsz, c, t, f = x.shape
    n, hidden = bsz * t * f, w1m.shape[0]
    a = dwm.new_empty(n, hidden)
    q = torch.empty(n, hidden, dtype=torch.uint8)
    if balanced:
        h = torch.mm(dwm, w1m.t())
        cpu_kernels.call("convnext_hidden_levels", h, b1, a, q, n, hidden, SWOOSH_L_OFFSET,
                         swoosh.LEVEL_STEP, 1)
    else:
        # z = h - 4 with the shift in the bias (as _torch_forward's addmm); the product in a
        # buffer kept between steps (only a and the levels are kept for the backward)
        m1 = torch.mm(dwm, w1m.t(), out=scratch("convnext.m1", (n, hidden), dwm))
        cpu_kernels.call("convnext_hidden_levels", m1, (b1 - SWOOSH_L_OFFSET).contiguous(), a, q,
                         n, hidden, 0.0, swoosh.LEVEL_STEP, 0)
        h = None
    out = torch.mm(a, w2m.t())
    bias = (b2 - SWOOSH_L_CONSTANT * w2m.sum(1)).contiguous()
    xm = x.permute(0, 2, 3, 1).reshape(n, c)
    cpu_kernels.call("convnext_residual", out, bias, out if keep is None else keep.contiguous(), xm,
                     bsz, t * f, c, int(keep is not None))
    return out, a, q, h


#: SwooshL(h) = softplus(h - 4) - 0.08 h - 0.035 = softplus(z) - 0.08 z - 0.355, z = h - 4
SWOOSH_L_OFFSET, SWOOSH_L_CONSTANT = 4.0, 0.355


def _fused_hidden_applies(m: "ConvNeXt", x: torch.Tensor) -> bool:
    """Whether :class:`_FusedHiddenCPU` computes ``m``'s residual branch for ``x``."""
    c0, c1, c2 = m.depthwise_conv, m.pointwise_conv1, m.pointwise_conv2
    kh, kw = c0.kernel_size
    return (fast_paths.cpu_layout(x) and m.training and torch.is_grad_enabled()
            and x.dtype == torch.float32 and not torch.is_autocast_enabled("cpu")
            and type(m.activation) is SwooshL
            and None not in (c0.bias, c1.bias, c2.bias)
            and kh % 2 == 1 and kw % 2 == 1 and tuple(c0.padding) == m.padding
            and tuple(c0.stride) == (1, 1) and tuple(c0.dilation) == (1, 1)
            and (type(m.hidden_balancer) is nn.Identity
                 or (isinstance(m.hidden_balancer, Balancer) and not m.hidden_balancer.predrawn)))


class ConvNeXt(nn.Module):
    """x (B, C, T, F) -> same shape."""

    def __init__(self, channels: int, hidden_ratio: int = 3, kernel_size: tuple[int, int] = (7, 7), *,
                 activation: str = "swoosh", balancer: bool = True, whitener: bool = True,
                 layerdrop_rate: FloatLike | None = None):
        super().__init__()
        hidden = channels * hidden_ratio
        self.padding = ((kernel_size[0] - 1) // 2, (kernel_size[1] - 1) // 2)
        self.layerdrop_rate = (ScheduledFloat((0.0, 0.2), (20000.0, 0.015))
                               if layerdrop_rate is None else layerdrop_rate)
        self.depthwise_conv = nn.Conv2d(channels, channels, kernel_size, groups=channels,
                                        padding=self.padding)
        self.pointwise_conv1 = nn.Conv2d(channels, hidden, 1)
        self.hidden_balancer = make_balancer(hidden, enabled=balancer, channel_dim=1, min_positive=0.3,
                                             max_positive=1.0, min_abs=0.75, max_abs=5.0)
        self.activation = create_activation(activation, "convnext")
        self.pointwise_conv2 = scaled_conv2d(hidden, channels, 1, initial_scale=0.01)
        self.out_balancer = make_balancer(channels, enabled=balancer, channel_dim=1, min_positive=0.4,
                                          max_positive=0.6, min_abs=1.0, max_abs=6.0)
        self.out_whiten = make_whitener(enabled=whitener, num_groups=1, whitening_limit=5.0,
                                        prob=(0.025, 0.25), grad_scale=0.01)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c0, c1, c2 = self.depthwise_conv, self.pointwise_conv1, self.pointwise_conv2
        if _fused_hidden_applies(self, x):
            # the CPU training path: few passes over the hidden layer (see _FusedHiddenCPU)
            x = x.contiguous(memory_format=torch.channels_last)
            shape = (x.shape[0], c1.out_channels, *x.shape[2:])
            balance = (self.hidden_balancer.draw(shape, True)
                       if isinstance(self.hidden_balancer, Balancer) else None)
            # the layer drop's draw (the same torch.rand as below), applied inside with the
            # residual; None when every utterance keeps its branch (read on the CPU: no sync)
            keep = None
            rate = float(self.layerdrop_rate)
            if rate != 0.0:
                keep = torch.rand(x.shape[0], 1, 1, 1, device=x.device) > rate
                keep = None if bool(keep.all()) else keep.to(x.dtype).view(-1)
            y = _FusedHiddenCPU.apply(x, c0.weight, c0.bias, c1.weight, c1.bias, c2.weight, c2.bias,
                                      self.padding, balance, keep)
            y = self.out_balancer(y)
            return self.out_whiten(y.transpose(1, 3)).transpose(1, 3) if y.requires_grad else y
        elif fast_paths.cpu_layout(x):
            # channels-last: the depth-wise convolution's backward is ~1.7x faster on CPU
            # and the point-wise ones become plain matrix products (see _pointwise);
            # the residual is added in that layout too (adding tensors of two layouts is
            # several times slower than either)
            x = x.contiguous(memory_format=torch.channels_last)
            y = c0(x)
            y = self.activation(self.hidden_balancer(_pointwise(y, c1)))
            y = _pointwise(y, c2)
        elif (self.training and torch.is_grad_enabled() and None not in (c0.bias, c1.bias, c2.bias)
                and isinstance(self.hidden_balancer, (Balancer, nn.Identity))):
            # keeps nothing but x for backward: the hidden layer is recomputed (memory over
            # time: the path a GPU takes; on CPU the layout path above is faster)
            shape = (x.shape[0], c1.out_channels, *x.shape[2:])
            balance = (self.hidden_balancer.draw(shape, True)
                       if isinstance(self.hidden_balancer, Balancer) else None)
            y = _LeanHidden.apply(x, c0.weight, c0.bias, c1.weight, c1.bias, c2.weight, c2.bias,
                                  self, balance)
        else:
            y = self.activation(self.hidden_balancer(c1(c0(x))))
            y = c2(y)
        if self.training:
            rate = float(self.layerdrop_rate)
            if rate != 0.0:
                keep = torch.rand(x.shape[0], 1, 1, 1, device=x.device) > rate
                y = y * keep.to(y.dtype)
        # no gradient (eval): y is this layer's own new tensor, add in place (same values)
        y = self.out_balancer(y.add_(x) if not (torch.is_grad_enabled() and (x.requires_grad or y.requires_grad))
                              else x + y)
        if y.requires_grad and self.training:
            # whitening is over channels, which it expects last
            y = self.out_whiten(y.transpose(1, 3)).transpose(1, 3)
        return y


def _pointwise(x: torch.Tensor, conv: nn.Conv2d) -> torch.Tensor:
    """A 1x1 ``conv`` of ``x`` (B, C, H, W) as one matrix product over the channels.

    For a channels-last ``x`` the permutes are views and the result is channels-last;
    torch's CPU 1x1 convolution of a contiguous input takes its slow im2col path.
    """
    w = conv.weight.reshape(conv.weight.shape[0], -1)
    y = torch.nn.functional.linear(x.permute(0, 2, 3, 1), w, conv.bias)
    return y.permute(0, 3, 1, 2)
