"""Conv2d subsampling: the original Conformer front end (frame rate / 4).

Two 3x3 convolutions with stride 2 over (time, frequency), each followed by
ReLU, then a Linear from ``d_model * F'`` to ``d_model`` where
``F' = ((num_features - 1) // 2 - 1) // 2`` (19 for 80-dim fbank). An input
of ``T`` frames gives ``((T - 1) // 2 - 1) // 2`` output frames; every valid
output frame depends on valid input frames only.
"""
from __future__ import annotations

import functools

import torch
from torch import nn

from .. import fast_paths

#: the smallest input (frames, or feature bins) the two 3x3 stride-2 convolutions accept
MIN_INPUT_SIZE = 7


def subsampled_size(n: int | torch.Tensor) -> int | torch.Tensor:
    """Output size of two unpadded 3x3 stride-2 convolutions: ``((n - 1) // 2 - 1) // 2``."""
    return ((n - 1) // 2 - 1) // 2


class _ConvReLUCPU(torch.autograd.Function):
    """relu(conv2d(x)) as one mkldnn call with ReLU fused into the convolution (the CPU
    skips a pass over the output, the Conformer's largest tensor: 1.25 of 2.2 ms for the
    first convolution of a 5 x 265-frame batch); the backward is what autograd runs for
    the two ops (threshold_backward, then convolution_backward with the same arguments),
    so values and gradients are the same bits."""

    @staticmethod
    def forward(ctx, x, weight, bias, stride):  # type: ignore[override]
        y = torch.ops.mkldnn._convolution_pointwise(x, weight, bias, [0, 0], stride, [1, 1], 1,
                                                    "relu", [None], "")
        ctx.save_for_backward(x, weight, y)
        ctx.stride = stride
        ctx.bias_sizes = None if bias is None else list(bias.shape)
        return y

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        x, weight, y = ctx.saved_tensors
        g = torch.ops.aten.threshold_backward(grad, y, 0)
        mask = [ctx.needs_input_grad[0], ctx.needs_input_grad[1], ctx.needs_input_grad[2]]
        gx, gw, gb = torch.ops.aten.convolution_backward(
            g, x, weight, ctx.bias_sizes, ctx.stride, [0, 0], [1, 1], False, [0, 0], 1, mask)
        return gx, gw, gb, None


@functools.cache
def _mkldnn_has_fused_relu() -> bool:
    """Whether this torch build has mkldnn's convolution with a fused ReLU (asked once)."""
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_convolution_pointwise")


def _fused_relu_applies(x: torch.Tensor) -> bool:
    return (fast_paths.cpu_layout(x) and x.dtype == torch.float32 and torch.is_grad_enabled()
            and not torch.is_autocast_enabled("cpu") and _mkldnn_has_fused_relu())


class Conv2dSubsampling(nn.Module):
    """(B, T, num_features) fbank -> (B, ((T - 1) // 2 - 1) // 2, d_model)."""

    def __init__(self, num_features: int, d_model: int) -> None:
        super().__init__()
        if num_features < MIN_INPUT_SIZE:
            raise ValueError(f"Conv2dSubsampling needs num_features >= {MIN_INPUT_SIZE}, got {num_features}")
        if d_model <= 0:
            raise ValueError(f"Conv2dSubsampling needs d_model > 0, got {d_model}")
        self.num_features = num_features
        self.d_model = d_model
        self.conv = nn.Sequential(
            nn.Conv2d(1, d_model, kernel_size=3, stride=2),
            nn.ReLU(),
            nn.Conv2d(d_model, d_model, kernel_size=3, stride=2),
            nn.ReLU(),
        )
        self.out = nn.Linear(d_model * subsampled_size(num_features), d_model)

    def forward(self, x: torch.Tensor, x_lens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x: (B, T, num_features); x_lens: (B,) valid frames. Returns (y, y_lens)."""
        if x.ndim != 3 or x.size(2) != self.num_features:
            raise ValueError(f"Conv2dSubsampling expects x of shape (batch, frames, {self.num_features}), "
                             f"got {tuple(x.shape)}")
        if x_lens.ndim != 1 or x_lens.size(0) != x.size(0):
            raise ValueError(f"x_lens must have shape ({x.size(0)},), got {tuple(x_lens.shape)}")
        if x.size(1) < MIN_INPUT_SIZE:
            raise ValueError(f"Conv2dSubsampling needs at least {MIN_INPUT_SIZE} frames, got {x.size(1)}")
        lo, hi = int(x_lens.min()), int(x_lens.max())
        if lo < MIN_INPUT_SIZE or hi > x.size(1):
            raise ValueError(f"x_lens must lie in [{MIN_INPUT_SIZE}, {x.size(1)}] (frames in x), "
                             f"got min {lo}, max {hi}")
        y = x.unsqueeze(1)
        if fast_paths.cpu_layout(y) and y.is_contiguous():
            # one channel: the same memory seen with channels-last strides, so both
            # convolutions run channels-last on CPU (faster there; same values within
            # float rounding)
            y = y.as_strided(y.shape, (y.stride(0), 1, y.stride(2), y.stride(3)))
        if _fused_relu_applies(y):
            for conv in (self.conv[0], self.conv[2]):
                y = _ConvReLUCPU.apply(y, conv.weight, conv.bias, list(conv.stride))
        else:
            y = self.conv(y)  # (B, d, T', F')
        b, c, t, f = y.shape
        y = self.out(y.transpose(1, 2).reshape(b, t, c * f))
        return y, subsampled_size(x_lens)
