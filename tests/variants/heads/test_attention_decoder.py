"""Attention decoder (AED) head: sizes, ids, causality, masking."""
from __future__ import annotations

import pytest
import torch

from variants.heads.attention_decoder import AttentionDecoder

torch.set_num_threads(1)


def tiny(memory_dim: int = 12) -> AttentionDecoder:
    torch.manual_seed(0)
    return AttentionDecoder(vocab_size=13, d_model=16, num_layers=2, nhead=4,
                            dim_feedforward=32, memory_dim=memory_dim)


@pytest.mark.parametrize("memory_dim, expected", [(256, 24_163_828), (512, 25_736_692), (768, 27_309_556)])
def test_param_count_matches_authors(memory_dim, expected):
    with torch.device("meta"):
        m = AttentionDecoder(500, 512, 6, 8, 2048, memory_dim)
    assert sum(p.numel() for p in m.parameters()) == expected
    assert (m.sos_id, m.eos_id, m.ignore_id) == (499, 499, -1)


def test_sos_eos_ids_can_follow_the_tokenizer():
    m = AttentionDecoder(13, 16, 1, 4, 32, 12, sos_id=1, eos_id=1)
    tokens_in, _, targets = m.make_inputs_and_targets([[3, 12]])
    assert tokens_in.tolist() == [[1, 3, 12]] and targets.tolist() == [[3, 12, 1]]
    with pytest.raises(ValueError, match="sos_id=13"):
        AttentionDecoder(13, 16, 1, 4, 32, 12, sos_id=13)


def test_make_inputs_and_targets():
    m = tiny()
    tokens_in, lens, targets = m.make_inputs_and_targets([[3, 4, 5], [7]])
    assert tokens_in.tolist() == [[12, 3, 4, 5], [12, 7, 12, 12]]
    assert lens.tolist() == [4, 2]
    assert targets.tolist() == [[3, 4, 5, 12], [7, 12, -1, -1]]
    with pytest.raises(ValueError, match="outside"):
        m.make_inputs_and_targets([[13]])


def test_shapes_and_backward():
    m = tiny()
    memory = torch.randn(2, 9, 12, requires_grad=True)
    tokens_in, lens, targets = m.make_inputs_and_targets([[3, 4, 5], [7]])
    logits = m(memory, torch.tensor([9, 6]), tokens_in, lens)
    assert logits.shape == (2, 4, 13)
    loss = torch.nn.functional.cross_entropy(logits.transpose(1, 2), targets, ignore_index=m.ignore_id)
    loss.backward()
    assert torch.isfinite(memory.grad).all() and memory.grad[1, 6:].abs().sum() == 0


def test_causal_self_attention():
    m = tiny().eval()
    memory, memory_lens = torch.randn(1, 9, 12), torch.tensor([9])
    tokens = torch.tensor([[12, 3, 4, 5, 6]])
    ref = m(memory, memory_lens, tokens)
    for k in range(1, 5):
        changed = tokens.clone()
        changed[0, k] = 10
        out = m(memory, memory_lens, changed)
        torch.testing.assert_close(out[:, :k], ref[:, :k])
        assert not torch.allclose(out[:, k], ref[:, k])


def test_memory_padding_is_masked():
    m = tiny().eval()
    memory = torch.randn(2, 9, 12)
    tokens = torch.tensor([[12, 3, 4], [12, 7, 8]])
    ref = m(memory, torch.tensor([9, 5]), tokens)
    memory2 = memory.clone()
    memory2[1, 5:] = 100.0
    out = m(memory2, torch.tensor([9, 5]), tokens)
    torch.testing.assert_close(out, ref)
    alone = m(memory[1:, :5], torch.tensor([5]), tokens[1:])
    torch.testing.assert_close(alone, ref[1:], atol=1e-5, rtol=1e-4)


def test_bad_input_is_named():
    m = tiny()
    with pytest.raises(ValueError, match="memory must have shape"):
        m(torch.randn(1, 4, 8), torch.tensor([4]), torch.tensor([[12]]))
    with pytest.raises(TypeError, match="integer"):
        m(torch.randn(1, 4, 12), torch.tensor([4]), torch.zeros(1, 2))
    with pytest.raises(ValueError, match=r"ids in \[0, 13\)"):
        m(torch.randn(1, 4, 12), torch.tensor([4]), torch.tensor([[12, -1]]))
    with pytest.raises(ValueError, match="nhead"):
        AttentionDecoder(13, 18, 1, 4, 8, 12)
