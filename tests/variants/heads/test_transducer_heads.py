"""Stateless transducer decoder and joiner: sizes, shapes, context semantics."""
from __future__ import annotations

import pytest
import torch

from variants.heads.transducer import Decoder, Joiner

torch.set_num_threads(1)


def n_params(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def test_decoder_param_count_matches_authors():
    with torch.device("meta"):
        assert n_params(Decoder(500, 512, 0, 2)) == 260_096  # embedding + grouped conv (groups of 4)
        assert n_params(Decoder(500, 512, 0, 1)) == 256_000


@pytest.mark.parametrize("encoder_dim, expected", [(256, 650_740), (512, 781_812), (768, 912_884)])
def test_joiner_param_count_matches_authors(encoder_dim, expected):
    with torch.device("meta"):
        assert n_params(Joiner(encoder_dim, 512, 512, 500)) == expected


def test_decoder_need_pad_semantics():
    torch.manual_seed(0)
    dec = Decoder(vocab_size=11, decoder_dim=8, blank_id=0, context_size=2).eval()
    y = torch.tensor([[0, 3, 7, 2], [0, 5, 1, 9]])
    train = dec(y)                                   # blank prepended, left-padded
    assert train.shape == (2, 4, 8)
    assert (train >= 0).all()                        # ends in ReLU
    for u in range(1, 4):                            # decoding sees the last 2 tokens
        step = dec(y[:, u - 1: u + 1], need_pad=False)
        assert step.shape == (2, 1, 8)
        torch.testing.assert_close(step[:, 0], train[:, u])
    # output u depends on tokens u-1 and u only
    y2 = y.clone()
    y2[:, 3] = 4
    torch.testing.assert_close(dec(y2)[:, :3], train[:, :3])
    with pytest.raises(ValueError, match="context_size=2"):
        dec(y, need_pad=False)


def test_decoder_negative_ids_embed_to_zero_and_train_backward():
    dec = Decoder(vocab_size=11, decoder_dim=8, blank_id=0, context_size=2)
    out = dec(torch.tensor([[-1, -1, 4]]))
    assert torch.equal(out[0, :2], torch.zeros(2, 8))
    out.sum().backward()
    assert dec.conv.weight.grad is not None and dec.conv.weight.shape == (8, 4, 2)


def test_decoder_bad_input_is_named():
    with pytest.raises(ValueError, match="divisible by 4"):
        Decoder(10, 6, 0, 2)
    with pytest.raises(ValueError, match="blank_id"):
        Decoder(10, 8, 10, 2)
    with pytest.raises(TypeError, match="integer"):
        Decoder(10, 8, 0, 2)(torch.zeros(1, 3))
    with pytest.raises(ValueError, match="outside the vocabulary"):
        Decoder(10, 8, 0, 2)(torch.tensor([[0, 10]]))


def test_joiner_broadcasts_and_project_input():
    torch.manual_seed(0)
    joiner = Joiner(encoder_dim=6, decoder_dim=8, joiner_dim=5, vocab_size=7)
    enc, dec = torch.randn(2, 4, 6), torch.randn(2, 3, 8)
    logits = joiner(enc.unsqueeze(2), dec.unsqueeze(1))
    assert logits.shape == (2, 4, 3, 7)
    manual = joiner.output_linear(torch.tanh(joiner.encoder_proj(enc[1, 2]) + joiner.decoder_proj(dec[1, 0])))
    torch.testing.assert_close(logits[1, 2, 0], manual)
    pre = joiner(joiner.encoder_proj(enc).unsqueeze(2), joiner.decoder_proj(dec).unsqueeze(1), project_input=False)
    torch.testing.assert_close(pre, logits)
    with pytest.raises(ValueError, match="joiner_dim=5"):
        joiner(enc, enc, project_input=False)


def test_joiner_projections_start_small():
    torch.manual_seed(0)
    joiner = Joiner(512, 512, 512, 500)
    reference = torch.nn.Linear(512, 512)
    ratio = joiner.encoder_proj.weight.std() / reference.weight.std()
    assert 0.2 < ratio < 0.3  # initial_scale 0.25
    assert joiner.encoder_proj.bias.abs().max() <= 0.025
