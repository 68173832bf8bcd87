import pytest

from harness.data.synthetic.grammar import Lexicon, SentenceGenerator


def test_same_seed_same_sentences_and_word_limits():
    lex = Lexicon.at_level(0.35)
    a = SentenceGenerator(lex, 3, 7, seed=1).unique_sentences(200)
    b = SentenceGenerator(lex, 3, 7, seed=1).unique_sentences(200)
    c = SentenceGenerator(lex, 3, 7, seed=2).unique_sentences(200)
    assert a == b and a != c
    assert len(set(a)) == 200
    assert all(3 <= len(s.split()) <= 7 for s in a)
    assert all(s == s.upper() and "  " not in s for s in a)
    assert {w for s in a for w in s.split()} <= lex.vocabulary()


def test_exclude_keeps_splits_disjoint():
    gen = SentenceGenerator(Lexicon.at_level(0.35), 3, 7, seed=0)
    train = gen.unique_sentences(300)
    test = gen.unique_sentences(50, exclude=set(train))
    assert not set(train) & set(test)


def test_vocabulary_grows_with_level():
    sizes = [len(Lexicon.at_level(x).vocabulary()) for x in (0.2, 0.35, 0.6, 1.0)]
    assert sizes == sorted(sizes) and sizes[0] < sizes[-1]


def test_articles_agree():
    sents = SentenceGenerator(Lexicon.at_level(1.0), 3, 12, seed=4).unique_sentences(2000)
    for s in sents:
        words = s.split()
        for w, nxt in zip(words, words[1:]):
            assert not (w == "A" and nxt[0] in "AEIOU"), s


@pytest.mark.parametrize("level", [0.0, 1.5])
def test_bad_level_is_named(level):
    with pytest.raises(ValueError, match="vocab_level"):
        Lexicon.at_level(level)


def test_running_out_of_sentences_is_an_error():
    gen = SentenceGenerator(Lexicon.at_level(0.05), 2, 2, seed=0)
    with pytest.raises(ValueError, match="ran out of distinct sentences"):
        gen.unique_sentences(100000)
