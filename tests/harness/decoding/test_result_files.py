"""Decode result files (recogs, errs, wer-summary) and decode keys."""
import pytest

from harness.decoding import DecodeSettings, error_rate
from harness.decoding.result_files import errs_text, write_recogs, write_wer_summary


def test_errs_counts_align_and_rank_the_errors(tmp_path):
    ids = ["u2", "u1"]
    refs = ["THE CAT SAT", "A DOG RAN HOME"]
    hyps = ["THE HAT SAT DOWN", "A DOG HOME"]
    text = errs_text(ids, refs, hyps).splitlines()
    assert text[0] == "%WER 42.86 [ 3 / 7, 1 ins, 1 del, 1 sub ]"
    assert text[1] == ("Errors: 1 insertions, 1 deletions, 1 substitutions, over 7 reference words "
                       "(5 correct)")
    assert "u1:\tA DOG (RAN->*) HOME" in text and "u2:\tTHE (CAT->HAT) SAT (*->DOWN)" in text
    assert text.index("u1:\tA DOG (RAN->*) HOME") < text.index("u2:\tTHE (CAT->HAT) SAT (*->DOWN)")
    after = lambda head: text[text.index(head) + 1]  # noqa: E731
    assert after("SUBSTITUTIONS: count ref -> hyp") == "1   CAT -> HAT"
    assert after("DELETIONS: count ref") == "1   RAN"
    assert after("INSERTIONS: count hyp") == "1   DOWN"
    # per word: correct, errors, in reference, in hypothesis; most errors first
    stats = text[text.index("PER-WORD STATS: word  corr tot_errs count_in_ref count_in_hyp") + 1:]
    assert "CAT   0 1 1 0" in stats and "THE   1 0 1 1" in stats
    assert stats.index("CAT   0 1 1 0") < stats.index("THE   1 0 1 1")
    # characters for CER corpora
    assert errs_text(["a"], ["AB C"], ["AC"], unit="char").startswith("%CER 33.33 [ 1 / 3,")


def test_recogs_and_summary_files(tmp_path):
    p = write_recogs(tmp_path / "recogs-test-m.txt", ["b", "a"], ["X Y", "Z"], ["X", "Z"])
    assert p.read_text().splitlines() == ["a:\tref=Z", "a:\thyp=Z", "b:\tref=X Y", "b:\thyp=X"]
    s = write_wer_summary(tmp_path / "wer-summary-test.txt",
                          {"m2": error_rate(["A B"], ["A"]), "m1": error_rate(["A B"], ["A B"])}, "epoch 3")
    assert s.read_text().splitlines() == ["# epoch 3", "settings\tWER", "m1\t0.00", "m2\t50.00"]


def test_decode_keys_name_the_averaging_and_the_beam_where_it_matters():
    s = DecodeSettings(methods=("greedy_search", "modified_beam_search"), beam=4, avg=3)
    assert s.key("greedy_search") == "avg3-averaged-model"
    assert s.key("modified_beam_search") == "avg3-averaged-model-beam4"
    assert s.with_(use_averaged_model=False, beam=None).key("ctc_prefix_beam_search") == "avg3-beam4"
    with pytest.raises(ValueError, match="unknown decoding method"):
        DecodeSettings(methods=("nope",))
