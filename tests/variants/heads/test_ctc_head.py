"""CTC output head."""
from __future__ import annotations

import pytest
import torch

from variants.heads.ctc import CtcHead


def test_ctc_head_params_and_log_softmax():
    with torch.device("meta"):
        assert sum(p.numel() for p in CtcHead(256, 500).parameters()) == 128_500
    head = CtcHead(16, 9).eval()
    out = head(torch.randn(2, 5, 16))
    assert out.shape == (2, 5, 9)
    torch.testing.assert_close(out.exp().sum(-1), torch.ones(2, 5))
    assert head.dropout.p == 0.1


def test_ctc_head_bad_input():
    with pytest.raises(ValueError, match="16 channels"):
        CtcHead(16, 9)(torch.randn(2, 5, 8))
