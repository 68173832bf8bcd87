"""Utterances too short for their transcript after subsampling, filtered as the authors'
recipe filters them.

The authors' training script (icefall's ``remove_short_and_long_utt``) drops a
training cut when the encoder would give it fewer frames than its transcript
has BPE tokens, ``T = ((num_frames - 7) // 2 + 1) // 2`` being the frames
after the Zipformer's subsampling (the Conformer's ``((T - 1) // 2 - 1) // 2``
is never fewer, so the same rule is safe for it). A CTC head also needs a
blank between two equal tokens, so for it the repeats count too. Such an
utterance cannot be trained on (no alignment exists); kept, it fails the cell
when its batch comes.

``data prepare`` lists them in ``changes.jsonl`` (change ``too_short``, stage
``filter``; the training and validation splits), and training filters them out
of the training and validation cuts, with a count in the log. Test splits are
decoded whole, as the authors decode them.
"""
from __future__ import annotations

from itertools import islice
from typing import Iterable, Sequence


def encoder_frames(num_frames: int) -> int:
    """Frames after the Zipformer's subsampling (the authors' recipe's formula)."""
    return ((num_frames - 7) // 2 + 1) // 2


def needed_frames(tokens: Sequence[int], ctc: bool = False) -> int:
    """Encoder frames a transcript needs: one per token (and, for CTC, one per repeat)."""
    repeats = sum(1 for a, b in zip(tokens[:-1], tokens[1:]) if a == b) if ctc else 0
    return len(tokens) + repeats


def too_short(cuts: Iterable, tokenizer, ctc: bool = False,
              chunk: int = 1000) -> list[tuple[str, int, int, str, float]]:
    """(cut id, encoder frames, frames needed, text, duration) of each cut too short for its
    transcript (``cuts`` read once, lazily, ``chunk`` at a time)."""
    out = []
    it = iter(cuts)
    while True:
        batch = [(c.id, c.num_frames, c.duration, " ".join(s.text or "" for s in c.supervisions))
                 for c in islice(it, chunk)]
        if not batch:
            return out
        for (cid, num_frames, duration, text), tokens in zip(batch, tokenizer.encode([b[3] for b in batch])):
            frames, need = encoder_frames(num_frames), needed_frames(tokens, ctc)
            if frames < need:
                out.append((cid, frames, need, text, duration))


def reason(frames: int, need: int, duration: float) -> str:
    return (f"{duration:.2f} s gives {frames} encoder frames after subsampling, its transcript "
            f"needs {need}")
