"""The recipe table: every corpus has a recipe and one options model, the identity recorded
for the built-in corpora is what it was before recipes (folders prepared then still match),
and split names decide the roles of one's own splits."""
import pytest

from harness.config.corpora import CORPUS_NAMES, CORPUS_OPTIONS, corpus_option_names
from harness.config.schema import DataSection
from harness.data.corpora import CORPORA, get_recipe
from harness.data.errors import DataError, UnknownCorpusError
from harness.data.prepare import corpus_identity
from harness.data.recipe import layout_from_names, split_role


def test_every_corpus_has_a_recipe_and_an_options_model():
    assert CORPORA == CORPUS_NAMES == ("synthetic", "librispeech", "aishell", "lhotse", "kaldi")
    for name in CORPORA:
        recipe = get_recipe(name)
        assert recipe.name == name and recipe.options is CORPUS_OPTIONS[name]
        DataSection(corpus=name, dir="d", max_duration=1)  # the schema takes each name
    with pytest.raises(UnknownCorpusError, match="allowed: synthetic, librispeech, aishell, lhotse, kaldi"):
        get_recipe("timit")
    assert corpus_option_names("synthetic")[:4] == ["tier", "hours", "voices", "seed"]


def test_identity_of_the_builtin_corpora_is_unchanged(tmp_path):
    assert corpus_identity("synthetic", tier="tiny", seed=2) == {
        "corpus": "synthetic", "vocab_size": 500, "speed_perturb": True, "tier": "tiny", "hours": None,
        "voices": None, "seed": 2}
    src = str(tmp_path.resolve())
    assert corpus_identity("librispeech", tmp_path, train_set="100", oov_chars="reject", allow_dropped=True) == {
        "corpus": "librispeech", "vocab_size": 500, "speed_perturb": True, "src": src, "train_set": "100"}
    assert corpus_identity("aishell", tmp_path, vocab_size=4000) == {
        "corpus": "aishell", "vocab_size": 4000, "speed_perturb": True, "src": src, "train_set": None}
    assert corpus_identity("kaldi", tmp_path, unit="char") == {
        "corpus": "kaldi", "vocab_size": 500, "speed_perturb": True, "src": src, "unit": "char", "channel": None}


@pytest.mark.parametrize("corpus, options, message", [
    ("aishell", {"tier": "easy"}, "tier applies to corpus synthetic only, not aishell"),
    ("synthetic", {"speed_pertub": False}, "unknown option 'speed_pertub' of corpus synthetic; allowed: tier"),
    ("lhotse", {"unit": "phone"}, "unit: Input should be 'word' or 'char'"),
    ("kaldi", {"channel": -1}, "channel: Input should be greater than or equal to 0"),
])
def test_options_a_corpus_does_not_take_are_named(tmp_path, corpus, options, message):
    with pytest.raises(DataError, match=message):
        corpus_identity(corpus, None if corpus == "synthetic" else tmp_path, **options)


def test_split_names_decide_roles():
    assert [split_role(n) for n in ("train-clean-100", "train_set", "dev_other", "valid", "val2",
                                    "test-clean", "eval2000", "extra")] == [
        "train", "train", "dev", "dev", "dev", "test", "test", None]
    layout = layout_from_names(["test_b", "train-b", "dev-b", "train-a", "dev-a", "test_a"], "word", "x")
    assert (layout.train_parts, layout.valid, layout.tests) == (["train-a", "train-b"], "dev-a", ["test_a", "test_b"])
    assert layout.eval_parts == ["dev-a", "dev-b", "test_a", "test_b"]
    with pytest.raises(DataError, match="no test split"):
        layout_from_names(["train", "dev"], "word", "x")
