"""Conv-Embed (paper section 3.1): the front end from 100 Hz fbank to 50 Hz.

Three Conv2d layers with 8, 32 and 128 output channels and 3x3 kernels, each
followed by SwooshR; one ConvNeXt layer; then Linear to the first stack's
dimension and BiasNorm. The paper lists time x frequency strides 1x2, 2x2,
1x2; the authors' implementation (whose parameter count, 611,953 for 80-dim
input and 192 outputs, is what this matches) uses 1x1 with frequency padding 1,
then 2x2 and 1x2, all unpadded in time, so 80 bins become 19 and

    T' = (T - 7) // 2.

``time_stride=4`` (the "no temporal downsampling" ablation, 25 Hz output)
also strides the third convolution by 2 in time: T' = ((T - 3) // 2 - 1) // 2.

Padding: the three convolutions are unpadded in time, so an output frame below
an utterance's T' reads only its own frames; ConvNeXt's 7x7 convolution,
though, reads 3 frames past it. The padded input frames and the frames from T'
on are therefore zeroed (before the convolutions and before ConvNeXt), so that
ConvNeXt sees there the zeros it sees past the end of an utterance alone, and
an utterance's output does not depend on its padding or its batch. The
authors' Conv2dSubsampling masks nothing (its output for a padded utterance
depends on the padding); for an unpadded batch the two are identical.

CPU training (``fast_paths.cpu_layout``, float32): each of the three Conv2d ->
Balancer -> SwooshR stages is one autograd Function (:class:`_ConvBalancedSwooshRCPU`),
bit for bit the modules applied in turn, with fewer autograd nodes and no fresh
output-sized tensors in its backward; on one thread its elementwise work runs as C loops
(csrc/conv_embed.c, within float32 roundings), the third stage zeroing the padded frames.
"""
from __future__ import annotations

import torch
from torch import nn

from .. import fast_paths
from .activation import create_activation
from .attention_weights import is_tracing
from . import balancer, cpu_kernels, swoosh
from .balancer import Balancer, make_balancer
from .convnext import ConvNeXt
from .dropout import TimeSharedDropout
from .norm import create_norm
from .scheduled_float import FloatLike, ScheduledFloat
from .whitener import make_whitener
from .padding_mask import padding_mask
from .scratch import scratch
from .swoosh import SwooshR


class _ScaleGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, alpha):  # type: ignore[override]
        ctx.alpha = alpha
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        return grad * ctx.alpha, None


class _ConvBalancedSwooshRCPU(torch.autograd.Function):
    """``SwooshR(balancer(conv2d(x, w, b)))``, one stage of Conv-Embed's convolution stack,
    on the CPU in training (channels-last), with fewer passes over the stage's output and
    no fresh tensors in the backward.

    Forward: the convolution (mkldnn); then SwooshR's CPU arithmetic on its output h, h
    kept only when the Balancer acts. With the C loops (:mod:`.cpu_kernels`) one pass
    (csrc/conv_embed.c) gives the value and the derivative's rounded level as a byte, and
    with ``lengths`` (the third stage's output lengths) writes 0 on the frames from each
    utterance's length on (what :func:`zero_padded_frames` does before ConvNeXt, whose
    masked copy then is not made); otherwise :func:`swoosh.swoosh_and_level_deriv` gives the
    value and the float level.
    Backward: the derivative times the incoming gradient into a scratch buffer (no fresh
    pages; it goes no further than the convolution's backward; with the C loops one pass
    from the byte, 0 on the zeroed frames); the Balancer's extra gradient (when it acts
    this step) from per-channel sums of h (:func:`balancer.add_extra_gradient_2d`), in
    place; the convolution's gradients from ``aten.convolution_backward``. Without the C
    loops the values, derivative levels and gradients of the modules applied in turn on
    the CPU layout path, bit for bit (tested); with them within float32 roundings of
    those. What it saves is the Balancer's and SwooshR's separate autograd nodes, the
    Balancer's fresh output-sized gradient and the SwooshR backward's fresh product.
    """

    @staticmethod
    def forward(ctx, x, w, b, stride, padding, balance, lengths=None):  # type: ignore[override]
        h = torch.nn.functional.conv2d(x, w, b, stride, padding)
        h = h.contiguous(memory_format=torch.channels_last)
        ctx.stride, ctx.padding, ctx.balance, ctx.lengths = stride, padding, balance, lengths
        if cpu_kernels.usable(h):
            # the C loop (csrc/conv_embed.c): SwooshR's value and its derivative's level as
            # a byte (a quarter of the float's memory), the padded frames zeroed (lengths)
            bsz, c, t, f = h.shape
            y = torch.empty_like(h)
            q = torch.empty((bsz, t, f, c), dtype=torch.uint8)
            cpu_kernels.call("conv_stage_forward", h, y, q, h if lengths is None else lengths, bsz, t,
                             f * c, int(lengths is not None), SwooshR.offset, SwooshR.constant,
                             swoosh.LEVEL_STEP)
            ctx.save_for_backward(x, w, q, h if balance is not None else None)
            return y
        if lengths is not None:
            raise ValueError("_ConvBalancedSwooshRCPU: lengths (the padded frames zeroed) need the C loops")
        # the SwooshR module's CPU arithmetic on h (the same helper: bit for bit)
        y, d = swoosh.swoosh_and_level_deriv(h, SwooshR.offset, SwooshR.constant)
        ctx.save_for_backward(x, w, d, h if balance is not None else None)
        return y

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        x, w, d, h = ctx.saved_tensors
        c = w.shape[0]
        grad = grad.contiguous(memory_format=torch.channels_last)
        # the gradient at h lives in a scratch buffer (it goes no further than the
        # convolution's backward below; no fresh pages), channels-last
        bsz, _, t, f = grad.shape
        gh = scratch("conv_embed.grad_h", (bsz, t, f, c), grad).permute(0, 3, 1, 2)
        if d.dtype == torch.uint8:
            # the derivative from its level times the gradient, 0 on the zeroed frames: one
            # pass (csrc/conv_embed.c)
            lengths = ctx.lengths
            cpu_kernels.call("conv_stage_backward", d, grad, gh, grad if lengths is None else lengths,
                             bsz, t, f * c, int(lengths is not None), swoosh.LEVEL_STEP, swoosh.DERIV_MIN)
        else:
            torch.mul(d, grad, out=gh)
        if ctx.balance is not None:
            limits, grad_scale, _ = ctx.balance
            gm = gh.permute(0, 2, 3, 1).reshape(-1, c)
            balancer.add_extra_gradient_2d(h.permute(0, 2, 3, 1).reshape(-1, c), gm, limits,
                                           grad_scale, out=gm)
        mask = [ctx.needs_input_grad[0], ctx.needs_input_grad[1], ctx.needs_input_grad[2]]
        gx, gw, gb = torch.ops.aten.convolution_backward(
            gh, x, w, [c], list(ctx.stride), list(ctx.padding), [1, 1], False, [0, 0], 1, mask)
        return gx, gw, gb, None, None, None, None


def zero_padded_frames(x: torch.Tensor, lengths: torch.Tensor, time_dim: int) -> torch.Tensor:
    """``x`` with the frames at and after each utterance's length (along ``time_dim``) set to 0.

    Always a masked copy, also for an unpadded batch: whether any utterance is
    padded is a question about the lengths' values, which would cost a host
    synchronisation on a GPU (issue 22) and which ``torch.export`` cannot trace.
    """
    t = x.shape[time_dim]
    pad = padding_mask(lengths.to(x.device), t)                   # (B, T)
    shape = [x.shape[0]] + [1] * (x.ndim - 1)
    shape[time_dim] = t
    if fast_paths.enabled():
        # one pass, forward and backward, in x's layout (the masked copy below clones a
        # channels-last x first; 1.25 vs 2.6 ms fwd + bwd at 5 x 64 x 114 x 19, one
        # thread); the same values and gradient, bit for bit
        return torch.where(pad.view(shape), 0.0, x)
    if x.ndim == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
        # keeps the channels-last layout (out-of-place masked_fill returns it contiguous)
        return x.clone().masked_fill_(pad.view(shape), 0.0)
    return x.masked_fill(pad.view(shape), 0.0)


def check_on_device(ok: torch.Tensor, message: str, lengths: torch.Tensor) -> None:
    """Assert the 0-dim bool ``ok`` without reading it back to the host (``torch._assert_async``).

    On a GPU a failure is a device-side assert; on CPU (where it is raised at
    once) it is a ValueError naming the lengths.
    """
    if ok.device.type != "cpu":
        torch._assert_async(ok, message)
        return
    try:
        torch._assert_async(ok, message)
    except RuntimeError:
        raise ValueError(f"{message}; got {lengths.tolist()}") from None


def conv_embed_lengths(lengths: torch.Tensor, time_stride: int = 2) -> torch.Tensor:
    """Output frames of Conv-Embed for ``lengths`` input frames (see module docstring)."""
    if time_stride == 2:
        return (lengths - 7) // 2
    if time_stride == 4:
        return ((lengths - 3) // 2 - 1) // 2
    raise ValueError(f"Conv-Embed time_stride must be 2 or 4, got {time_stride}")


class ConvEmbed(nn.Module):
    """x (B, T, num_features), lengths (B,) -> (B, T', out_dim), lengths'."""

    def __init__(self, num_features: int, out_dim: int, time_stride: int = 2,
                 dropout: FloatLike = 0.1, *, norm: str = "bias_norm", activation: str = "swoosh",
                 balancer: bool = True, whitener: bool = True,
                 channels: tuple[int, int, int] = (8, 32, 128)):
        super().__init__()
        if num_features < 7:
            raise ValueError(f"Conv-Embed needs at least 7 feature bins, got num_features={num_features}")
        conv_embed_lengths(torch.tensor([0]), time_stride)  # validates time_stride
        self.time_stride = time_stride
        self.num_features = num_features
        c1, c2, c3 = channels
        self.min_frames = 7 if time_stride == 2 else 9
        self.conv = nn.Sequential(
            nn.Conv2d(1, c1, 3, padding=(0, 1)),
            make_balancer(c1, enabled=balancer, channel_dim=1, max_abs=1.0),
            create_activation(activation, "conv_embed"),
            nn.Conv2d(c1, c2, 3, stride=2),
            make_balancer(c2, enabled=balancer, channel_dim=1, max_abs=4.0),
            create_activation(activation, "conv_embed"),
            nn.Conv2d(c2, c3, 3, stride=(time_stride // 2, 2)),
            make_balancer(c3, enabled=balancer, channel_dim=1, max_abs=4.0),
            create_activation(activation, "conv_embed"),
        )
        self.convnext = ConvNeXt(c3, activation=activation, balancer=balancer, whitener=whitener)
        self.out_width = ((num_features - 1) // 2 - 1) // 2
        self.out = nn.Linear(self.out_width * c3, out_dim)
        self.out_whiten = make_whitener(
            enabled=whitener, num_groups=1,
            whitening_limit=ScheduledFloat((0.0, 4.0), (20000.0, 8.0), default=4.0),
            prob=(0.025, 0.25), grad_scale=0.02)
        self.out_norm = create_norm(norm, out_dim)
        self.dropout = TimeSharedDropout(dropout)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if x.ndim != 3 or x.shape[-1] != self.num_features:
            raise ValueError(f"Conv-Embed expects (batch, frames, {self.num_features}) features, "
                             f"got shape {tuple(x.shape)}")
        if x.shape[1] < self.min_frames:
            raise ValueError(f"Conv-Embed needs at least {self.min_frames} input frames, got {x.shape[1]}")
        out_lens = conv_embed_lengths(lengths, self.time_stride)
        b = x.shape[0]
        message = (f"Conv-Embed: lengths must have shape ({b},), be at most the padded "
                   f"length {x.shape[1]} and at least {self.min_frames}")
        if lengths.shape != (b,):
            raise ValueError(f"{message}; got shape {tuple(lengths.shape)}")
        # the values are checked where they are, without a host synchronisation
        # (issue 22); an exporter (ONNX) cannot trace the check
        if not is_tracing():
            check_on_device((lengths.max() <= x.shape[1]) & (out_lens.min() >= 1), message, lengths)
        x = zero_padded_frames(x, lengths, time_dim=1)
        y = x.unsqueeze(1)                                   # (B, 1, T, F)
        if self.training and torch.is_grad_enabled():
            # keeps the first conv's gradients in fp16 range under amp (authors: 0.2)
            if _fused_stack_applies(self, y):
                return self._fused_stack_forward(y, out_lens)
            if fast_paths.cpu_layout(y) and y.is_contiguous():
                # one channel: the same memory seen with channels-last strides, so the
                # first convolution runs, and returns its output, channels-last (no layout
                # copy of the output; its forward + backward 1.2 instead of 2.7 ms for
                # 5 x 236 frames, one thread)
                y = y.as_strided(y.shape, (y.stride(0), 1, y.stride(2), y.stride(3)))
            c0 = self.conv[0]
            if fast_paths.cpu_layout(y) and not y.requires_grad and c0.bias is not None:
                # the input needs no gradient, so scaling the weight's and bias's gradients
                # is scaling the output's (the convolution is linear in them): two tiny
                # tensors instead of the output-sized one (the same values within float
                # rounding; the CPU has no float16 range to keep)
                y = c0._conv_forward(y, _ScaleGrad.apply(c0.weight, 0.2),
                                     _ScaleGrad.apply(c0.bias, 0.2))
            else:
                y = _ScaleGrad.apply(c0(y), 0.2)
            if fast_paths.cpu_layout(y):
                # channels-last from here on: the next convolutions and ConvNeXt run faster
                y = y.contiguous(memory_format=torch.channels_last)
            y = self.conv[1:](y)
        else:
            y = self.conv(y)
        return self._tail(y, out_lens)

    def _fused_stack_forward(self, y: torch.Tensor, out_lens: torch.Tensor
                             ) -> tuple[torch.Tensor, torch.Tensor]:
        """The three convolution stages as :class:`_ConvBalancedSwooshRCPU` (see
        :func:`_fused_stack_applies`); the first one's input is the (B, 1, T, F) features,
        seen channels-last, whose gradient is not needed, so the 0.2 gradient scale goes on
        its weight and bias (as on the layout path)."""
        y = y.as_strided(y.shape, (y.stride(0), 1, y.stride(2), y.stride(3)))
        # with the C loops the third stage zeroes the padded frames itself (its output's
        # and its gradient's, in the passes it makes anyway: no masked copy before ConvNeXt)
        lengths = out_lens.to(torch.int64).contiguous() if cpu_kernels.usable(y) else None
        for i in range(3):
            conv, bal = self.conv[3 * i], self.conv[3 * i + 1]
            w, b = conv.weight, conv.bias
            if i == 0:
                w, b = _ScaleGrad.apply(w, 0.2), _ScaleGrad.apply(b, 0.2)
            shape = (y.shape[0], conv.out_channels,
                     *conv_output_size(y.shape[2:], conv.kernel_size, conv.stride, conv.padding))
            balance = bal.draw(shape, True) if isinstance(bal, Balancer) else None
            y = _ConvBalancedSwooshRCPU.apply(y, w, b, tuple(conv.stride), tuple(conv.padding), balance,
                                              lengths if i == 2 else None)
        return self._tail(y, out_lens, zeroed=lengths is not None)

    def _tail(self, y: torch.Tensor, out_lens: torch.Tensor, zeroed: bool = False
              ) -> tuple[torch.Tensor, torch.Tensor]:
        """ConvNeXt, the Linear to the stack's dimension, whitening, BiasNorm, dropout
        (``zeroed``: the padded frames of ``y`` are 0 already, and their gradient too)."""
        y = self.convnext(y if zeroed else zero_padded_frames(y, out_lens, time_dim=2))   # (B, C, T', F')
        b, c, t, f = y.shape
        if (self.training and torch.is_grad_enabled() and fast_paths.cpu_layout(y)
                and y.is_contiguous(memory_format=torch.channels_last)):
            # training on the CPU, channels-last: each frame's (F', C) values are contiguous, so the Linear takes
            # them as they lie with its weight's columns permuted to (F', C) order (a copy of
            # the small weight instead of the activations', and the gradient comes back
            # channels-last, as ConvNeXt's backward wants it; same sums in another order)
            w = self.out.weight.view(-1, c, f).transpose(1, 2).reshape(-1, f * c)
            y = torch.nn.functional.linear(y.permute(0, 2, 3, 1).reshape(b, t, f * c), w, self.out.bias)
        else:
            y = self.out(y.transpose(1, 2).reshape(b, t, c * f))
        y = self.dropout(self.out_norm(self.out_whiten(y)))
        return y, out_lens


def conv_output_size(size, kernel, stride, padding) -> tuple[int, int]:
    """The (H, W) output of an undilated convolution."""
    return tuple((n + 2 * p - k) // s + 1 for n, k, s, p in zip(size, kernel, stride, padding))


def _fused_stack_applies(m: ConvEmbed, y: torch.Tensor) -> bool:
    """Whether Conv-Embed's convolution stack runs as :class:`_ConvBalancedSwooshRCPU`
    stages for the (B, 1, T, F) input ``y`` (called in training with a gradient): the CPU
    layout paths on, float32 without autocast or compilation, the features needing no
    gradient, SwooshR activations, biased undilated convolutions, and Balancers drawn in
    the forward (not predrawn) or absent."""
    if not (fast_paths.cpu_layout(y) and y.dtype == torch.float32 and y.is_contiguous()
            and not y.requires_grad and not torch.is_autocast_enabled("cpu")):
        return False
    for i in range(3):
        conv, bal, act = m.conv[3 * i], m.conv[3 * i + 1], m.conv[3 * i + 2]
        if (type(act) is not SwooshR or conv.bias is None or conv.groups != 1
                or tuple(conv.dilation) != (1, 1) or isinstance(conv.padding, str)
                or not (type(bal) is nn.Identity or (type(bal) is Balancer and not bal.predrawn))):
            return False
    return True
