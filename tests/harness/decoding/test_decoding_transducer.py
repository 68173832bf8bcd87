"""Transducer greedy and modified beam search against a hand-built joiner whose
best path is known, and consistency checks on a tiny real model."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from harness.decoding import decode, greedy_search, modified_beam_search

BLANK = 0
V = 5


class LastTokenDecoder(nn.Module):
    """Stand-in stateless decoder: output = one-hot of the last token of the context."""

    def __init__(self, context_size: int = 2):
        super().__init__()
        self.context_size = context_size
        self.blank_id = BLANK

    def forward(self, y: torch.Tensor, need_pad: bool = True) -> torch.Tensor:
        assert not need_pad and y.shape[1] == self.context_size
        return nn.functional.one_hot(y[:, -1:].clamp(min=0), V).float()


class TableJoiner(nn.Module):
    """Stand-in joiner: log-probs table[frame, last token] (encoder output = one-hot frame index)."""

    def __init__(self, table: torch.Tensor):
        super().__init__()
        self.table = table  # (T, V, V): frame, previous token -> log-probs of the next symbol
        self.encoder_proj = nn.Identity()
        self.decoder_proj = nn.Identity()

    def forward(self, enc, dec, project_input=True):
        return torch.einsum("...f,...l,flv->...v", enc, dec, self.table)


class HandBuiltTransducer(nn.Module):
    head_names = ("transducer",)
    blank_id = BLANK
    vocab_size = V

    def __init__(self, table: torch.Tensor):
        super().__init__()
        self.decoder = LastTokenDecoder()
        self.joiner = TableJoiner(table)

    def forward_encoder(self, x, x_lens):
        return x, x_lens


def _table(rows: list[dict[int, dict[int, float]]]) -> torch.Tensor:
    """rows[t][prev] = {token: prob}; unlisted prev tokens use rows[t][-1]; the rest of the mass is tiny."""
    T = len(rows)
    table = torch.full((T, V, V), math.log(1e-6))
    for t, row in enumerate(rows):
        for prev in range(V):
            for tok, p in row.get(prev, row[-1]).items():
                table[t, prev, tok] = math.log(p)
    return table


def _frames(lens: list[int], T: int) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.zeros(len(lens), T, T)
    for b in range(len(lens)):
        x[b, torch.arange(T), torch.arange(T)] = 1.0
    return x, torch.tensor(lens)


def test_both_searches_find_the_known_best_path_batched():
    # frame-wise: 3, blank, 1, 1, blank, 4 with probability 0.9 whatever came before
    best = [3, BLANK, 1, 1, BLANK, 4]
    rows = [{-1: {tok: 0.9, (tok % 4) + 1 if tok else 2: 0.1}} for tok in best]
    model = HandBuiltTransducer(_table(rows))
    x, lens = _frames([6, 4, 1], 6)
    expected = [[3, 1, 1, 4], [3, 1, 1], [3]]
    assert decode(model, x, lens, "greedy_search") == expected
    assert decode(model, x, lens, "modified_beam_search", beam=4) == expected


def test_beam_search_escapes_the_greedy_trap():
    # frame 0: label 1 (0.5) beats label 2 (0.4); frame 1: after 1 everything is flat,
    # after 2 label 3 is almost sure, so "2 3" (0.384) beats any path through 1 (<= 0.11)
    rows = [
        {-1: {1: 0.5, 2: 0.4, BLANK: 0.1}},
        {1: {BLANK: 0.22, 1: 0.2, 2: 0.2, 3: 0.19, 4: 0.19}, 2: {3: 0.96, BLANK: 0.04}, -1: {BLANK: 0.999}},
    ]
    model = HandBuiltTransducer(_table(rows))
    x, lens = _frames([2], 2)
    assert decode(model, x, lens, "greedy_search") == [[1]]
    assert decode(model, x, lens, "modified_beam_search", beam=4) == [[2, 3]]
    assert decode(model, x, lens, "modified_beam_search", beam=1) == [[1]]


def test_beam_search_merges_paths_with_the_same_labels():
    # "1" is reachable as (1, blank) or (blank, 1): 0.3*0.6 + 0.35*0.5 = 0.355 beats
    # "2" at 0.35 * 0.9 = 0.315, which is the single best path
    rows = [
        {-1: {1: 0.3, BLANK: 0.35, 2: 0.35}},
        {BLANK: {1: 0.5, 4: 0.5}, 1: {BLANK: 0.6, 4: 0.4}, 2: {BLANK: 0.9, 4: 0.1}, -1: {BLANK: 1.0}},
    ]
    model = HandBuiltTransducer(_table(rows))
    x, lens = _frames([2], 2)
    # length normalisation (the authors') divides by history length: "1" -> 3 entries, "2" -> 3 entries
    assert decode(model, x, lens, "modified_beam_search", beam=4) == [[1]]


def test_beam_one_equals_greedy_on_a_real_model(tiny_model):
    model = tiny_model("transducer")
    torch.manual_seed(5)
    feats, lens = torch.randn(3, 140, 80), torch.tensor([140, 100, 60])
    assert decode(model, feats, lens, "modified_beam_search", beam=1) == decode(model, feats, lens, "greedy_search")


@pytest.mark.parametrize("search", [greedy_search, modified_beam_search])
def test_batching_does_not_change_results(tiny_model, search):
    model = tiny_model("transducer")
    torch.manual_seed(6)
    enc, enc_lens = torch.randn(3, 30, 32) * 3, torch.tensor([30, 17, 5])
    batched = search(model, enc, enc_lens)
    single = [search(model, enc[b: b + 1, : enc_lens[b]], enc_lens[b: b + 1])[0] for b in range(3)]
    assert batched == single
    assert any(len(h) > 0 for h in batched)


def test_beam_must_be_positive(tiny_model):
    model = tiny_model("transducer")
    with pytest.raises(ValueError, match="beam must be >= 1"):
        modified_beam_search(model, torch.zeros(1, 3, 32), torch.tensor([3]), beam=0)


def test_unk_extends_no_hypothesis():
    # label 2 is the most likely symbol on frame 1; declared <unk>, it is dropped like blank
    rows = [{-1: {3: 0.9, BLANK: 0.1}}, {-1: {2: 0.6, BLANK: 0.3, 4: 0.1}}, {-1: {1: 0.9, BLANK: 0.1}}]
    model = HandBuiltTransducer(_table(rows))
    x, lens = _frames([3], 3)
    assert decode(model, x, lens, "greedy_search") == [[3, 2, 1]]
    assert decode(model, x, lens, "greedy_search", unk_id=2) == [[3, 1]]
    assert decode(model, x, lens, "modified_beam_search", unk_id=2) == [[3, 1]]
