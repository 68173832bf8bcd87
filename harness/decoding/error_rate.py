"""Word and character error rates with Kaldi compute-wer style counts (kaldialign),
in total (:func:`error_rate`) and per utterance (:func:`utterance_errors`, what the
confidence intervals of ``harness compare`` resample)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional, Sequence

import numpy as np

import kaldialign

Unit = Literal["word", "char"]


@dataclass(frozen=True)
class ErrorStats:
    """Edit-distance totals over a test set."""

    errors: int
    ins: int
    dels: int
    subs: int
    ref_words: int  # reference units (words or characters)
    unit: Unit = "word"

    @property
    def wer(self) -> float:
        """Error rate in percent (0 for an empty reference with no errors)."""
        if self.ref_words == 0:
            return 0.0 if self.errors == 0 else float("inf")
        return 100.0 * self.errors / self.ref_words

    def __str__(self) -> str:
        name = "WER" if self.unit == "word" else "CER"
        return (f"%{name} {self.wer:.2f} [ {self.errors} / {self.ref_words}, "
                f"{self.ins} ins, {self.dels} del, {self.subs} sub ]")


def split_units(text: str, unit: Unit) -> list[str]:
    """Words (whitespace-separated) or characters (whitespace dropped)."""
    if unit == "word":
        return text.split()
    if unit == "char":
        return [c for c in text if not c.isspace()]
    raise ValueError(f"unit must be 'word' or 'char', got {unit!r}")


@dataclass(frozen=True)
class UtteranceErrors:
    """Edit-distance counts of each utterance of a test set (arrays of one length, in
    ``ids`` order), in the corpus's scoring unit: words, or characters for CER."""

    ids: tuple[str, ...]
    speakers: tuple[str, ...]   # '' where the supervision names no speaker
    ref_len: np.ndarray          # reference units per utterance (int64)
    subs: np.ndarray
    dels: np.ndarray
    ins: np.ndarray
    unit: Unit = "word"

    @property
    def errors(self) -> np.ndarray:
        """Substitutions + deletions + insertions per utterance."""
        return self.subs + self.dels + self.ins

    def stats(self) -> ErrorStats:
        """The test set's totals."""
        ins, dels, subs = int(self.ins.sum()), int(self.dels.sum()), int(self.subs.sum())
        return ErrorStats(errors=ins + dels + subs, ins=ins, dels=dels, subs=subs,
                          ref_words=int(self.ref_len.sum()), unit=self.unit)


def utterance_errors(refs: Sequence[str], hyps: Sequence[str], unit: Unit = "word",
                     ids: Optional[Sequence[str]] = None,
                     speakers: Optional[Sequence[Optional[str]]] = None) -> UtteranceErrors:
    """Insertions, deletions and substitutions of each of ``hyps`` against its reference."""
    if len(refs) != len(hyps):
        raise ValueError(f"got {len(refs)} references but {len(hyps)} hypotheses")
    n = len(refs)
    ids = tuple(str(i) for i in ids) if ids is not None else tuple(str(i) for i in range(n))
    speakers = tuple("" if s is None else str(s) for s in speakers) if speakers is not None else ("",) * n
    if len(ids) != n or len(speakers) != n:
        raise ValueError(f"got {n} references but {len(ids)} ids and {len(speakers)} speakers")
    counts = np.zeros((4, n), dtype=np.int64)
    for i, (ref, hyp) in enumerate(zip(refs, hyps)):
        r, h = split_units(ref, unit), split_units(hyp, unit)
        d = kaldialign.edit_distance(r, h)
        counts[:, i] = (len(r), d["sub"], d["del"], d["ins"])
    return UtteranceErrors(ids=ids, speakers=speakers, ref_len=counts[0], subs=counts[1],
                           dels=counts[2], ins=counts[3], unit=unit)


def error_rate(refs: Sequence[str], hyps: Sequence[str], unit: Unit = "word") -> ErrorStats:
    """Total insertions, deletions and substitutions of ``hyps`` against ``refs``."""
    return utterance_errors(refs, hyps, unit).stats()
