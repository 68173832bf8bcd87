"""The Conformer feed-forward module: Linear(d -> ff), activation (Swish),
dropout, Linear(ff -> d). A Conformer layer holds two of them around its
attention and convolution modules (macaron style), each added to the residual
stream with weight 1/2 by the layer."""
from __future__ import annotations

import torch
from torch import nn

from . import cpu_kernels
from .activation import create_activation
from .dropout import Dropout, loop_state, masked_loop
from .swoosh import Swish


class _SwishDropoutCPU(torch.autograd.Function):
    """dropout(swish(x)) as one C loop each way (csrc/dropout.c): torch's dropout mask, bit
    for bit (drawn as :class:`~.dropout.Dropout` draws it), and Swish within float32 roundings
    of torch's x * sigmoid(x); keeps x and the byte mask (torch: x, sigmoid(x), the float32
    mask and the product). The hidden layer is the Conformer step's largest tensor."""

    @staticmethod
    def forward(ctx, x, p, state):  # type: ignore[override]
        y, keep, scale = masked_loop("swish_dropout_forward", x, p, state)
        ctx.save_for_backward(x, keep)
        ctx.scale = scale
        return y

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        x, keep = ctx.saved_tensors
        if grad.stride() != x.stride() or grad.dtype != x.dtype:
            grad = torch.empty_like(x).copy_(grad)    # the loop runs in x's memory order
        gx = torch.empty_like(x)
        cpu_kernels.call("swish_dropout_backward", x, grad, keep, gx, x.numel(), ctx.scale)
        return gx, None, None


class MacaronFeedForward(nn.Module):
    """x (..., d) -> (..., d)."""

    def __init__(self, d_model: int, dim_feedforward: int, dropout: float = 0.1,
                 activation: str = "swish") -> None:
        super().__init__()
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.activation = create_activation(activation, "feed_forward")
        self.dropout = Dropout(dropout)
        self.linear2 = nn.Linear(dim_feedforward, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.linear1(x)
        if type(self.activation) is Swish:           # (loop_state: float32 CPU fast path)
            state = loop_state(h, self.dropout.p, self.training)
            if state is not None:
                return self.linear2(_SwishDropoutCPU.apply(h, float(self.dropout.p), state))
        return self.linear2(self.dropout(self.activation(h)))
