"""The options of each corpus: one pydantic model per corpus, shared by the grid schema
(``data.corpus`` / ``data.options``), ``plan``'s checks (``harness.grid.validate``), the
``data`` command and :func:`harness.data.prepare_corpus` (which looks a corpus's recipe up
in ``harness.data.corpora``).

The models check names and types; the recipes check values (a synthetic tier, a
LibriSpeech training set), with messages that say what is allowed.
"""
from __future__ import annotations

from typing import Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field

#: BPE units (the paper's 500)
DEFAULT_VOCAB_SIZE = 500


class CorpusOptions(BaseModel):
    """What every corpus takes."""

    model_config = ConfigDict(extra="forbid")

    #: worker processes (null: CPU count, at most 8)
    num_jobs: Optional[int] = None
    #: BPE units (500 as in the paper; fewer if the transcripts cannot support it)
    vocab_size: int = DEFAULT_VOCAB_SIZE
    #: add the 0.9/1.1 speed-perturbed training copies
    speed_perturb: bool = True
    #: let a test split lose utterances whose audio cannot be read (else an error)
    allow_dropped: bool = False
    #: progress bars
    progress: bool = True


class SyntheticOptions(CorpusOptions):
    #: tiny, easy, standard, hard (null: easy)
    tier: Optional[str] = None
    #: training hours (null: the tier's)
    hours: Optional[Union[int, float]] = None  # an int stays one (as given, in messages and options.json)
    #: eSpeak voices of the training speakers (null: the tier's)
    voices: Optional[int] = None
    #: seed of the generated corpus
    seed: int = 0


class LibriSpeechOptions(CorpusOptions):
    #: auto (960 h when all three training parts are present), 100 or 960
    train_set: str = "auto"
    #: transcript characters outside the alphabet: report (a warning) or reject
    oov_chars: str = "report"


class AishellOptions(CorpusOptions):
    pass


class OwnCorpusOptions(CorpusOptions):
    """A corpus of the user's own (lhotse manifests, Kaldi data directories)."""

    #: transcript characters other than letters, digits, marks, apostrophe and space:
    #: report (a warning) or reject
    oov_chars: str = "report"
    #: word: BPE units and WER (as LibriSpeech); char: one unit per character and CER (as Aishell)
    unit: Literal["word", "char"] = "word"
    #: multi-channel audio: null mixes the channels down (their mean), N keeps channel N
    channel: Optional[int] = Field(None, ge=0)


#: corpus name -> its options model; the order is the order of ``data.corpus``'s choices
CORPUS_OPTIONS: dict[str, type[CorpusOptions]] = {
    "synthetic": SyntheticOptions,
    "librispeech": LibriSpeechOptions,
    "aishell": AishellOptions,
    "lhotse": OwnCorpusOptions,
    "kaldi": OwnCorpusOptions,
}
CORPUS_NAMES = tuple(CORPUS_OPTIONS)
Corpus = Literal["synthetic", "librispeech", "aishell", "lhotse", "kaldi"]
assert set(Corpus.__args__) == set(CORPUS_NAMES)  # type: ignore[attr-defined]


def corpus_option_names(corpus: str) -> list[str]:
    """``corpus``'s options, its own first (as an 'allowed:' list shows them)."""
    model = CORPUS_OPTIONS[corpus]
    common = list(CorpusOptions.model_fields)
    return [k for k in model.model_fields if k not in common] + common


def corpora_taking(option: str) -> list[str]:
    """The corpora whose options include ``option``."""
    return [c for c, m in CORPUS_OPTIONS.items() if option in m.model_fields]


def all_option_names() -> list[str]:
    """Every corpus's options, each once, in table order (common ones after the first corpus's)."""
    out: list[str] = []
    for corpus in CORPUS_NAMES:
        out += [k for k in corpus_option_names(corpus) if k not in out]
    return out
