"""The corpora ``prepare_corpus`` knows: name -> recipe (:class:`harness.data.recipe.Recipe`).

    synthetic    built in (eSpeak NG), harness.data.synthetic.recipe
    librispeech  a local copy, through lhotse's recipe, harness.data.librispeech
    aishell      a local copy, through lhotse's recipe, harness.data.aishell
    lhotse       one's own lhotse manifests, one per split, harness.data.lhotse_manifests
    kaldi        one's own Kaldi data directories, one per split, harness.data.kaldi

Each recipe's options model is in :mod:`harness.config.corpora` (the grid schema's
``data.corpus`` choices are its keys). Recipes are imported when first asked for.
"""
from __future__ import annotations

import importlib

from harness.config.corpora import CORPUS_NAMES

from .errors import UnknownCorpusError
from .recipe import Recipe

#: corpus name -> module holding its ``RECIPE``
RECIPES = {
    "synthetic": "harness.data.synthetic.recipe",
    "librispeech": "harness.data.librispeech",
    "aishell": "harness.data.aishell",
    "lhotse": "harness.data.lhotse_manifests",
    "kaldi": "harness.data.kaldi",
}
CORPORA = tuple(RECIPES)
assert CORPORA == CORPUS_NAMES, "harness.config.corpora and harness.data.corpora list other corpora"


def get_recipe(corpus: str) -> Recipe:
    """The recipe of ``corpus``; an unknown name is an UnknownCorpusError naming the allowed ones."""
    if corpus not in RECIPES:
        raise UnknownCorpusError(f"unknown corpus {corpus!r}; allowed: {', '.join(CORPORA)}")
    return importlib.import_module(RECIPES[corpus]).RECIPE
