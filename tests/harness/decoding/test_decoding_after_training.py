"""End to end: a small model trained with compute_loss transcribes its training
batch exactly with every decoding method of its heads (losses + searches + WER).

The encoder is a stand-in (stride-4 frame stacking and two Linear layers) so
training takes a few seconds; the heads are the real ones."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from harness.decoding import available_methods, decode, error_rate
from harness.losses import LossConfig, compute_loss
from variants.heads.attention_decoder import AttentionDecoder
from variants.heads.ctc import CtcHead
from variants.heads.transducer import Decoder, Joiner

V, DIM, STRIDE, FEATS = 12, 32, 4, 80  # blank 0, labels 1..10, <sos/eos> 11


class StrideEncoderAsr(nn.Module):
    def __init__(self, heads: tuple[str, ...]):
        super().__init__()
        self.head_names, self.vocab_size, self.blank_id = heads, V, 0
        self.encoder = nn.Sequential(nn.Linear(STRIDE * FEATS, 64), nn.Tanh(), nn.Linear(64, DIM))
        if "transducer" in heads:
            self.decoder = Decoder(V, 16, 0, context_size=2)
            self.joiner = Joiner(DIM, 16, 32, V)
            self.simple_am_proj = nn.Linear(DIM, V)
            self.simple_lm_proj = nn.Linear(16, V)
        if "ctc" in heads:
            self.ctc_output = CtcHead(DIM, V, dropout=0.0)
        if "attention" in heads:
            self.attention_decoder = AttentionDecoder(V, d_model=32, num_layers=1, nhead=2,
                                                      dim_feedforward=32, memory_dim=DIM, dropout=0.0)

    def forward_encoder(self, x, x_lens):
        B, T, F = x.shape
        T4 = T // STRIDE
        out = self.encoder(x[:, : T4 * STRIDE].reshape(B, T4, STRIDE * F))
        return out, x_lens // STRIDE


def _data():
    g = torch.Generator().manual_seed(0)
    token_vectors = torch.randn(V, FEATS, generator=g)
    tokens = [[3, 1, 4, 1, 5], [9, 2, 6], [5, 3, 5, 8], [9, 7]]
    frames_per_token = 3 * STRIDE
    T = (max(len(t) for t in tokens) + 2) * frames_per_token
    feats = torch.zeros(len(tokens), T, FEATS)
    lens = []
    for b, seq in enumerate(tokens):
        for i, tok in enumerate(seq):
            start = (i + 1) * frames_per_token
            feats[b, start: start + frames_per_token - STRIDE] = token_vectors[tok]
        lens.append((len(seq) + 2) * frames_per_token)
    feats += 0.05 * torch.randn(feats.shape, generator=g)
    return feats, torch.tensor(lens), tokens


@pytest.mark.parametrize("heads", [("transducer",), ("ctc", "attention")])
def test_trained_model_transcribes_its_batch_with_every_method(heads):
    torch.manual_seed(0)
    model = StrideEncoderAsr(heads)
    feats, feat_lens, tokens = _data()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    cfg = LossConfig(rnnt_backend="torch", warm_step=50)
    first = None
    for step in range(100):  # exact transcripts from about step 60 on
        loss, info = compute_loss(model, feats, feat_lens, tokens, step, cfg)
        first = first if first is not None else info["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert info["loss"] < 0.1 * first
    refs = [" ".join(map(str, t)) for t in tokens]
    for method in available_methods(model):
        hyps = decode(model, feats, feat_lens, method)
        stats = error_rate(refs, [" ".join(map(str, h)) for h in hyps])
        assert stats.errors == 0, f"{method}: {stats}"
