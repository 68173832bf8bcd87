"""Train the sentencepiece model of a corpus (icefall's lang_bpe setup).

As in the authors' recipe: unigram model type, ``<blk>`` at id 0 and
``<sos/eos>`` at id 1 as user-defined symbols, ``<unk>`` at id 2, no bos/eos,
character coverage 1.0. ``vocab_size`` defaults to 500 (the paper); a small
corpus cannot support that many pieces, so the size actually trained is
whatever sentencepiece accepts at or below the request (recorded by the caller).
Character units (Aishell-1) use model type ``char`` with every character.
"""
from __future__ import annotations

import contextlib
import logging
import re
import tempfile
from pathlib import Path
from typing import Iterable

from harness.atomic import atomic_path

log = logging.getLogger(__name__)

SPECIAL_SYMBOLS = ("<blk>", "<sos/eos>")
UNK_ID = len(SPECIAL_SYMBOLS)
DEFAULT_VOCAB_SIZE = 500


def _train(text_file: Path, prefix: Path, vocab_size: int, model_type: str, hard_limit: bool) -> None:
    """Train in the scratch folder with relative paths: the model embeds its
    trainer settings, and absolute scratch paths would make equal models differ."""
    import sentencepiece as spm

    spm.set_random_generator_seed(0)
    with contextlib.chdir(text_file.parent):
        _train_here(text_file.name, prefix.name, vocab_size, model_type, hard_limit)


def _train_here(text_file: str, prefix: str, vocab_size: int, model_type: str, hard_limit: bool) -> None:
    import sentencepiece as spm

    spm.SentencePieceTrainer.train(
        input=text_file, model_prefix=prefix, vocab_size=vocab_size,
        model_type=model_type, character_coverage=1.0, input_sentence_size=100_000_000,
        user_defined_symbols=list(SPECIAL_SYMBOLS), unk_id=UNK_ID, bos_id=-1, eos_id=-1,
        hard_vocab_limit=hard_limit, minloglevel=2, num_threads=1)


def train_bpe(texts: Iterable[str], model_path: str | Path, vocab_size: int = DEFAULT_VOCAB_SIZE,
              unit: str = "word") -> int:
    """Train on ``texts`` and write ``model_path`` atomically; returns the vocabulary size.

    ``unit="word"``: unigram pieces, ``vocab_size`` or, when the text is too
    small for it, the largest size sentencepiece can train. ``unit="char"``: one piece per character (``vocab_size`` ignored).
    """
    import sentencepiece as spm

    if unit not in ("word", "char"):
        raise ValueError(f"unit={unit!r}; allowed: 'word', 'char'")
    if vocab_size <= UNK_ID + 1:
        raise ValueError(f"vocab_size={vocab_size} must exceed {UNK_ID + 1} (<blk>, <sos/eos>, <unk>)")
    lines = [t.strip() for t in texts if t and t.strip()]
    if not lines:
        raise ValueError("train_bpe: no training transcripts")
    model_path = Path(model_path)
    model_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".bpe-", dir=model_path.parent) as scratch:
        work = Path(scratch)
        text_file = work / "transcripts.txt"
        text_file.write_text("\n".join(lines) + "\n", encoding="utf-8")
        prefix = work / "model"
        if unit == "char":
            chars = {c for line in lines for c in line if not c.isspace()}
            _train(text_file, prefix, len(chars) + UNK_ID + 2, "char", hard_limit=False)
        else:
            size = _largest_trainable(text_file, prefix, vocab_size)
            if size < vocab_size:
                log.warning("the transcripts support only %d of the %d requested units; using %d",
                            size, vocab_size, size)
        with atomic_path(model_path) as tmp:
            tmp.write_bytes((prefix.with_suffix(".model")).read_bytes())
    sp = spm.SentencePieceProcessor(model_file=str(model_path))
    return sp.vocab_size()


def _largest_trainable(text_file: Path, prefix: Path, vocab_size: int) -> int:
    """Train at ``vocab_size``; if the text is too small for it, at the largest
    size sentencepiece reports it can train."""
    try:
        _train(text_file, prefix, vocab_size, "unigram", hard_limit=True)
        return vocab_size
    except RuntimeError as e:
        found = re.search(r"Vocabulary size too high \(\d+\)\. Please set it to a value <= (\d+)", str(e))
        if not found:
            raise ValueError(f"sentencepiece cannot train {vocab_size} units on these "
                             f"transcripts: {e}") from e
        size = int(found.group(1))
    _train(text_file, prefix, size, "unigram", hard_limit=True)
    return size
