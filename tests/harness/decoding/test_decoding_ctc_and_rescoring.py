"""CTC greedy search, CTC prefix beam search (against brute force), attention
rescoring, the decode() dispatcher."""
from __future__ import annotations

import itertools
import math

import pytest
import torch

from harness.decoding import (attention_rescoring, attention_scores, available_methods,
                              ctc_greedy_search, ctc_prefix_beam_search, decode)

BLANK = 0


def collapse(path) -> tuple[int, ...]:
    out, prev = [], None
    for tok in path:
        if tok != prev and tok != BLANK:
            out.append(tok)
        prev = tok
    return tuple(out)


def test_ctc_greedy_merges_repeats_and_drops_blanks():
    best = torch.tensor([[1, 1, 0, 1, 2, 2, 0, 3], [0, 2, 2, 2, 0, 0, 0, 0]])
    log_probs = torch.nn.functional.one_hot(best, 4).float().add(0.01).log()
    assert ctc_greedy_search(log_probs, torch.tensor([8, 4]), BLANK) == [[1, 1, 2, 3], [2]]


def test_prefix_beam_search_matches_brute_force_sum_over_alignments():
    torch.manual_seed(0)
    T, V = 5, 3
    log_probs = torch.randn(1, T, V, dtype=torch.float64).log_softmax(-1)
    totals: dict[tuple[int, ...], float] = {}
    for path in itertools.product(range(V), repeat=T):
        p = math.exp(sum(float(log_probs[0, t, k]) for t, k in enumerate(path)))
        totals[collapse(path)] = totals.get(collapse(path), 0.0) + p
    ranked = sorted(totals.items(), key=lambda kv: kv[1], reverse=True)
    # a beam as wide as the number of distinct prefixes keeps every one of them
    nbest = ctc_prefix_beam_search(log_probs, torch.tensor([T]), BLANK, beam=len(totals))[0]
    assert [tuple(h) for h, _ in nbest[:5]] == [h for h, _ in ranked[:5]]
    for hyp, score in nbest:
        assert score == pytest.approx(math.log(totals[tuple(hyp)]), abs=1e-9)


def test_prefix_beam_search_best_is_at_least_greedy():
    torch.manual_seed(1)
    log_probs = torch.randn(2, 12, 6).log_softmax(-1)
    lens = torch.tensor([12, 7])
    nbest = ctc_prefix_beam_search(log_probs, lens, BLANK, beam=4)
    greedy = ctc_greedy_search(log_probs, lens, BLANK)
    for b in range(2):
        scores = dict((tuple(h), s) for h, s in nbest[b])
        best_score = nbest[b][0][1]
        assert best_score >= scores.get(tuple(greedy[b]), -math.inf)
        assert len(nbest[b]) <= 4


def test_attention_scores_are_sequence_log_probs(tiny_model):
    dec = tiny_model("ctc_aed").attention_decoder
    torch.manual_seed(2)
    enc, enc_lens = torch.randn(2, 6, 32), torch.tensor([6, 4])
    hyps = [[1, 2], []]
    got = attention_scores(dec, enc, enc_lens, hyps)
    for b, hyp in enumerate(hyps):
        logp = dec(enc[b: b + 1, : enc_lens[b]], enc_lens[b: b + 1],
                   torch.tensor([[dec.sos_id] + hyp])).log_softmax(-1)[0]
        expected = sum(float(logp[i, tok].detach()) for i, tok in enumerate(hyp + [dec.eos_id]))
        assert got[b].item() == pytest.approx(expected, abs=1e-4)


def test_attention_rescoring_picks_the_best_combined_score(tiny_model):
    model = tiny_model("ctc_aed")
    torch.manual_seed(3)
    enc, enc_lens = torch.randn(2, 15, 32), torch.tensor([15, 9])
    nbest = ctc_prefix_beam_search(model.ctc_output(enc), enc_lens, BLANK, beam=5)
    # scale 0: plain CTC n-best order
    assert attention_rescoring(model, enc, enc_lens, nbest=5, attention_scale=0.0) == [l[0][0] for l in nbest]
    got = attention_rescoring(model, enc, enc_lens, nbest=5, attention_scale=2.0)
    for b in range(2):
        hyps = [h for h, _ in nbest[b]]
        att = attention_scores(model.attention_decoder, enc[b: b + 1].expand(len(hyps), -1, -1),
                               enc_lens[b: b + 1].expand(len(hyps)), hyps)
        combined = [s + 2.0 * float(a) for (_, s), a in zip(nbest[b], att)]
        assert got[b] == hyps[max(range(len(hyps)), key=combined.__getitem__)]


def test_available_methods_follow_the_heads(tiny_model):
    assert available_methods(tiny_model("transducer")) == ["greedy_search", "modified_beam_search"]
    assert available_methods(tiny_model("ctc")) == ["ctc_greedy_search", "ctc_prefix_beam_search"]
    assert available_methods(tiny_model("ctc_aed")) == ["ctc_greedy_search", "ctc_prefix_beam_search",
                                                        "attention_rescoring"]


def test_decode_errors(tiny_model):
    feats, lens = torch.randn(1, 60, 80), torch.tensor([60])
    with pytest.raises(ValueError, match="unknown decoding method 'beam'; allowed: greedy_search, "
                                         "modified_beam_search, ctc_greedy_search, "
                                         "ctc_prefix_beam_search, attention_rescoring"):
        decode(tiny_model("transducer"), feats, lens, "beam")
    with pytest.raises(ValueError, match="'ctc_greedy_search' needs the ctc head.*available methods: "
                                         "greedy_search, modified_beam_search"):
        decode(tiny_model("transducer"), feats, lens, "ctc_greedy_search")


def test_decode_restores_training_mode(tiny_model):
    model = tiny_model("ctc").train()
    out = decode(model, torch.randn(2, 80, 80), torch.tensor([80, 50]), "ctc_greedy_search")
    assert model.training and len(out) == 2
    model.eval()


def test_ctc_prefix_beam_search_method_returns_the_best_prefix(tiny_model):
    model = tiny_model("ctc")
    feats, lens = torch.randn(2, 90, 80), torch.tensor([90, 70])
    best = decode(model, feats, lens, "ctc_prefix_beam_search", beam=4)
    enc, enc_lens = model.forward_encoder(feats, lens)
    nbest = ctc_prefix_beam_search(model.ctc_output(enc), enc_lens, model.blank_id, beam=4)
    assert best == [hyps[0][0] for hyps in nbest]
