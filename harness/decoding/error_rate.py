"""Word and character error rates with Kaldi compute-wer style counts (kaldialign)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Sequence

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


def error_rate(refs: Sequence[str], hyps: Sequence[str], unit: Unit = "word") -> ErrorStats:
    """Total insertions, deletions and substitutions of ``hyps`` against ``refs``."""
    if len(refs) != len(hyps):
        raise ValueError(f"got {len(refs)} references but {len(hyps)} hypotheses")
    ins = dels = subs = ref_len = 0
    for ref, hyp in zip(refs, hyps):
        r, h = split_units(ref, unit), split_units(hyp, unit)
        d = kaldialign.edit_distance(r, h)
        ins += d["ins"]
        dels += d["del"]
        subs += d["sub"]
        ref_len += len(r)
    return ErrorStats(errors=ins + dels + subs, ins=ins, dels=dels, subs=subs, ref_words=ref_len, unit=unit)
