"""The ConvNeXt layer of Conv-Embed (paper section 3.1): depth-wise 7x7
convolution, point-wise convolution to 3x the channels, SwooshL, point-wise
convolution back, with a residual connection. In training the residual branch
is dropped per utterance at a scheduled rate (authors: 0.2 falling to 0.015)."""
from __future__ import annotations

import torch
from torch import nn

from .. import fast_paths
from .activation import create_activation
from .balancer import Balancer, apply_balancer, make_balancer
from .scaled_linear import scaled_conv2d
from .scheduled_float import FloatLike, ScheduledFloat
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
        if fast_paths.cpu_layout(x):
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
