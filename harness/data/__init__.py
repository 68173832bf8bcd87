"""Data: corpora as recipes (harness.data.corpora: synthetic, LibriSpeech, Aishell-1, one's own
lhotse manifests or Kaldi data directories) through one lhotse pipeline.

Public interface (imported lazily, so ``import harness.data`` is cheap)::

    prepare_corpus(corpus, out_dir, src_dir=None, **options) -> PreparedCorpus
    PreparedCorpus.load(out_dir)
    Tokenizer(bpe_model_path)
    make_dataloader(cuts, max_duration, train, ...) -> DataLoader
    batch_lengths(batch), batch_texts(batch), batch_cut_ids(batch), batch_speakers(batch)
"""
from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "prepare_corpus": "harness.data.prepare",
    "PreparedCorpus": "harness.data.prepare",
    "CORPORA": "harness.data.corpora",
    "get_recipe": "harness.data.corpora",
    "Tokenizer": "harness.data.tokenizer",
    "make_dataloader": "harness.data.loader",
    "batch_lengths": "harness.data.loader",
    "batch_texts": "harness.data.loader",
    "batch_cut_ids": "harness.data.loader",
    "batch_speakers": "harness.data.loader",
    "DataError": "harness.data.errors",
    "CorpusNotFoundError": "harness.data.errors",
    "MissingAudioError": "harness.data.errors",
    "EmptySplitError": "harness.data.errors",
    "UnknownCorpusError": "harness.data.errors",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'harness.data' has no attribute {name!r}")
