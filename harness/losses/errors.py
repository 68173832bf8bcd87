"""Input validation for the losses: bad transcripts raise :class:`LossInputError`
naming the utterance, instead of producing NaN or inf losses."""
from __future__ import annotations

from typing import Sequence


class LossInputError(ValueError):
    """A transcript or length that no loss can be computed for."""


def utterance_names(utt_ids: Sequence[str] | None, n: int) -> list[str]:
    """The given ids, or ``batch[i]`` placeholders; checks the count."""
    if utt_ids is None:
        return [f"batch[{i}]" for i in range(n)]
    if len(utt_ids) != n:
        raise LossInputError(f"got {len(utt_ids)} utterance ids for {n} transcripts")
    return [str(u) for u in utt_ids]


def check_transcripts(tokens: Sequence[Sequence[int]], names: list[str], vocab_size: int,
                      reserved: dict[int, str]) -> None:
    """Every transcript non-empty, every id in [0, vocab_size) and not a reserved id."""
    for name, seq in zip(names, tokens):
        if len(seq) == 0:
            raise LossInputError(f"utterance {name!r} has an empty transcript; "
                                 "drop it from the batch (no loss is defined for it)")
        for pos, tok in enumerate(seq):
            tok = int(tok)
            if not 0 <= tok < vocab_size:
                raise LossInputError(f"utterance {name!r}: token id {tok} at position {pos} is outside "
                                     f"the vocabulary [0, {vocab_size})")
            if tok in reserved:
                raise LossInputError(f"utterance {name!r}: token id {tok} at position {pos} is the "
                                     f"{reserved[tok]} id, which may not appear in a transcript")


def ctc_min_frames(seq: Sequence[int]) -> int:
    """Frames CTC needs for ``seq``: one per label plus a blank between repeated labels."""
    repeats = sum(1 for a, b in zip(seq[:-1], seq[1:]) if a == b)
    return len(seq) + repeats


def check_ctc_lengths(tokens: Sequence[Sequence[int]], frames: Sequence[int], names: list[str]) -> None:
    """Raise if some transcript needs more encoder frames than the utterance has."""
    for name, seq, n in zip(names, tokens, frames):
        need = ctc_min_frames(seq)
        if need > n:
            raise LossInputError(f"utterance {name!r}: {len(seq)} labels need at least {need} encoder "
                                 f"frames for CTC but the encoder produced {n}")


def check_frames(frames: Sequence[int], names: list[str]) -> None:
    """Every utterance must have at least one encoder frame."""
    for name, n in zip(names, frames):
        if n < 1:
            raise LossInputError(f"utterance {name!r} has {n} encoder frames; the input is too short")
