"""SwooshR and SwooshL (paper section 3.4, eq. 4) and Swish.

    SwooshR(x) = log(1 + exp(x - 1)) - 0.08 x - 0.313261687
    SwooshL(x) = log(1 + exp(x - 4)) - 0.08 x - 0.035
    Swish(x)   = x * sigmoid(x)

The SwooshR offset makes SwooshR(0) = 0.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


# log(1 + exp(z)) is softplus(z): one fused kernel, no zeros tensor to allocate
# (softplus switches to the identity above z = 20, where the two agree to 2e-9).
def swoosh_r(x: torch.Tensor) -> torch.Tensor:
    return F.softplus(x - 1.0) - 0.08 * x - 0.313261687


def swoosh_l(x: torch.Tensor) -> torch.Tensor:
    return F.softplus(x - 4.0) - 0.08 * x - 0.035


class SwooshR(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return swoosh_r(x)


class SwooshL(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return swoosh_l(x)


class Swish(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(x)
