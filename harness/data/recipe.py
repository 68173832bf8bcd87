"""What a corpus recipe declares, and what ``prepare_corpus`` hands it.

A recipe (one module per corpus, listed in :mod:`harness.data.corpora`) says
which options the corpus takes (a model of :mod:`harness.config.corpora`),
whether it reads a source folder, which of its splits are test sets, which
transcript alphabet is checked, and how its lhotse manifests are made. Every
manifest goes through :meth:`Context.save`, which applies the shared checks
(sample rate, channels, transcript characters, dropped utterances) and records
them in ``changes.jsonl``; features, the BPE model and the too-short filter
are the same for every corpus (``harness.data.prepare``).
"""
from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from harness.config.corpora import CORPUS_OPTIONS, CorpusOptions


@dataclass
class Layout:
    """The splits a recipe made: trained on, validated on, scored, and their unit."""

    train_parts: list[str]
    eval_parts: list[str]          # every split that is not trained on (valid and tests included)
    valid: str
    tests: list[str]
    unit: str                      # "word" (BPE units, WER) or "char" (characters, CER)
    info: dict[str, Any] = field(default_factory=dict)
    #: the name of the training parts' union when there are several
    combined: str = "train-all"


@dataclass
class Context:
    """What a recipe's ``manifests`` gets from ``prepare_corpus``."""

    out: Path
    src: Optional[Path]
    num_jobs: int
    progress: bool
    #: save(split, recordings, supervisions, drops): the shared checks, then the manifests
    save: Callable[..., None]
    #: have(split): the split's manifests are written already (preparation is incremental)
    have: Callable[[str], bool]
    #: bar(total, desc): a progress bar
    bar: Callable[..., Any]


class Recipe:
    """A corpus: its options, source, test splits and manifests (see the module docstring)."""

    name: str = ""
    #: reads a source folder (--src, data.src_dir); False: generated
    takes_src: bool = True
    #: the ``data prepare`` flag that names the source folder
    src_flag: str = "--src"
    #: the splits scored as test sets, which may lose no utterance unless allowed
    test_splits: tuple[str, ...] = ()
    #: the transcripts' alphabet (anything supporting ``in``), None: not checked
    alphabet: Any = None
    alphabet_name: str = ""

    @property
    def options(self) -> type[CorpusOptions]:
        return CORPUS_OPTIONS[self.name]

    def is_test(self, split: str) -> bool:
        return split in self.test_splits

    def identity(self, src: Optional[Path], opts: CorpusOptions) -> dict[str, Any]:
        """The options (beyond corpus, vocab_size, speed_perturb) that make a prepared corpus
        what it is, validated; ``src`` is resolved (None for a generated corpus)."""
        return {"src": str(src)}

    @property
    def source_what(self) -> str:
        """What the source folder holds (for messages)."""
        return f"a local copy of {self.name}"

    #: training audio hours per epoch (speed-perturbed copies included), None: unknown
    train_hours_known: Optional[float] = None

    def train_hours(self, options: dict[str, Any]) -> Optional[tuple[float, str]]:
        """(training hours per epoch, where the figure comes from) before the corpus is
        prepared (``plan``'s cost estimate); None where the recipe cannot know."""
        if self.train_hours_known is None:
            return None
        return self.train_hours_known, f"{self.name} size"

    def check_source(self, src: Path, opts: CorpusOptions, deep: bool = False) -> None:
        """Checks of the source folder before anything is written (``deep``: also those that
        read every entry, such as whether each audio file exists; ``plan`` runs them)."""

    def manifests(self, ctx: Context, opts: CorpusOptions) -> Layout:
        raise NotImplementedError

    def finish(self, out: Path, info: dict[str, Any]) -> None:
        """Called with the final ``info`` once the corpus is prepared."""


class WordAlphabet:
    """Letters, digits and marks of any script, the apostrophe and the space (``in`` tests a
    character): what a transcript of one's own corpus is checked against."""

    NAME = "letters, digits, marks, apostrophe and space"

    def __contains__(self, c: object) -> bool:
        return isinstance(c, str) and (c in "' " or unicodedata.category(c)[0] in "LMN")


class OwnCorpusRecipe(Recipe):
    """A corpus the user brings in a standard layout (Kaldi data directories, lhotse
    manifests): transcripts checked against :class:`WordAlphabet`, identified by its source
    folder, unit and channel, each split's role from its name (:func:`split_role`)."""

    alphabet = WordAlphabet()
    alphabet_name = WordAlphabet.NAME

    def identity(self, src: Path, opts) -> dict[str, Any]:
        return {"src": str(src), "unit": opts.unit, "channel": opts.channel}

    def is_test(self, split: str) -> bool:
        return split_role(split) == "test"

    # what each layout supplies: its splits in the source folder, and per split a check
    # and a reader
    def find(self, src: Path) -> dict[str, Any]:
        """Split name -> what holds it (a folder, a set of manifest files)."""
        raise NotImplementedError

    def check_split(self, opts, split: str, found: Any) -> None:
        """The deep check of one split's source (paths, audio, transcripts)."""
        raise NotImplementedError

    def read_split(self, split: str, found: Any, progress: bool) -> tuple:
        """One split as (recordings, supervisions, drops) for :attr:`Context.save`."""
        raise NotImplementedError

    def describe(self, found: dict[str, Any]) -> dict[str, Any]:
        """What the prepared corpus records of its source's files."""
        raise NotImplementedError

    def check_source(self, src: Path, opts, deep: bool = False) -> None:
        found = self.find(src)
        layout_from_names(list(found), opts.unit, str(src))
        if deep:
            for split, item in found.items():
                self.check_split(opts, split, item)

    def manifests(self, ctx: Context, opts) -> Layout:
        found = self.find(ctx.src)
        layout = layout_from_names(list(found), opts.unit, str(ctx.src))
        for split, item in found.items():
            if not ctx.have(split):
                ctx.save(split, *self.read_split(split, item, ctx.progress))
        layout.info = {"corpus": self.name, "source": str(ctx.src), **self.describe(found)}
        return layout


def check_texts(recipe: Recipe, opts: CorpusOptions, split: str, texts: dict[str, str], where: str) -> None:
    """What preparation would refuse in one split's transcripts, found before it starts (``plan``):
    an empty transcript in a test split (unless ``allow_dropped``), characters outside the
    alphabet with ``oov_chars: reject``."""
    from .errors import DataError
    from .transcripts import alphabet_message, outside_alphabet

    if recipe.alphabet is not None and getattr(opts, "oov_chars", "report") == "reject":
        found = outside_alphabet(((u, t or "") for u, t in texts.items()), recipe.alphabet)
        if found:
            raise DataError(f"{where}: {alphabet_message(recipe.name, split, found, len(texts), recipe.alphabet_name)}; "
                            f"allowed: {recipe.alphabet_name} (oov_chars: report keeps them)")
    empty = [u for u, t in texts.items() if not (t or "").strip()]
    if empty and recipe.is_test(split) and not opts.allow_dropped:
        raise DataError(f"{where}: {recipe.name} test split {split} would lose {len(empty)} of {len(texts)} "
                        f"utterances (e.g. {empty[0]}: empty transcript); a test set must keep every "
                        "utterance: fix them, or allow it with --allow-dropped (data.options.allow_dropped: true)")


# --------------------------------------------------------------------------- split names

#: a split's role from its name: the first of these words it contains
SPLIT_ROLES = (("train", ("train",)), ("dev", ("dev", "valid", "val")), ("test", ("test", "eval")))


def split_role(name: str) -> Optional[str]:
    """"train", "dev" or "test" by the words in ``name`` (train-clean-100 -> train,
    dev_other -> dev, eval2000 -> test); None when it has none of them."""
    words = [w for w in _words(name.lower())]
    for role, keys in SPLIT_ROLES:
        if any(w.startswith(k) for w in words for k in keys):
            return role
    return None


def _words(name: str) -> list[str]:
    import re

    return [w for w in re.split(r"[^a-z0-9]+", name) if w]


def layout_from_names(splits: list[str], unit: str, where: str) -> Layout:
    """The layout of splits named by the user: every train split trained on (combined when
    several), the first dev split (sorted) validated on, every test split scored."""
    from .errors import DataError

    roles = {s: split_role(s) for s in splits}
    odd = [s for s, r in roles.items() if r is None]
    if odd:
        raise DataError(f"{where}: split name(s) {', '.join(odd)} say neither train, dev nor test; "
                        "allowed: names containing train, dev/valid/val or test/eval")
    by_role = {r: sorted(s for s in splits if roles[s] == r) for r, _ in SPLIT_ROLES}
    missing = [r for r, names in by_role.items() if not names]
    if missing:
        raise DataError(f"{where}: no {' and no '.join(missing)} split (found: {', '.join(sorted(splits)) or 'none'}); "
                        "allowed: one split per name, at least one containing each of train, dev, test")
    return Layout(train_parts=by_role["train"], eval_parts=by_role["dev"] + by_role["test"],
                  valid=by_role["dev"][0], tests=by_role["test"], unit=unit)
