"""WER/CER with Kaldi compute-wer style counts."""
from __future__ import annotations

import pytest

from harness.decoding import ErrorStats, error_rate


def test_word_counts_and_kaldi_line():
    refs = ["the cat sat on the mat", "hello world", "a b"]
    hyps = ["the cat sat on mat", "hello big world", "a c"]
    stats = error_rate(refs, hyps, unit="word")
    assert (stats.ins, stats.dels, stats.subs, stats.errors, stats.ref_words) == (1, 1, 1, 3, 10)
    assert stats.wer == pytest.approx(30.0)
    assert str(stats) == "%WER 30.00 [ 3 / 10, 1 ins, 1 del, 1 sub ]"


def test_char_unit_ignores_spaces():
    stats = error_rate(["ab cd"], ["abd"], unit="char")
    assert (stats.ins, stats.dels, stats.subs, stats.ref_words) == (0, 1, 0, 4)
    assert str(stats) == "%CER 25.00 [ 1 / 4, 0 ins, 1 del, 0 sub ]"


def test_empty_hypothesis_is_all_deletions():
    stats = error_rate(["one two three"], [""])
    assert (stats.dels, stats.errors, stats.wer) == (3, 3, 100.0)


def test_empty_reference():
    assert error_rate([""], [""]).wer == 0.0
    assert ErrorStats(errors=2, ins=2, dels=0, subs=0, ref_words=0).wer == float("inf")


def test_bad_arguments():
    with pytest.raises(ValueError, match="got 2 references but 1 hypotheses"):
        error_rate(["a", "b"], ["a"])
    with pytest.raises(ValueError, match="unit must be 'word' or 'char', got 'phone'"):
        error_rate(["a"], ["a"], unit="phone")
