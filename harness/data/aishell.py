"""Aishell-1 from a local copy, through ``lhotse.recipes.prepare_aishell`` (character units)."""
from __future__ import annotations

import tempfile
from pathlib import Path

from .audio_check import point_back, symlink_mirror, unreadable_audio
from .errors import CorpusNotFoundError, EmptySplitError
from .recipe import Context, Layout, Recipe

PARTS = ("train", "dev", "test")
TRANSCRIPT = Path("data_aishell/transcript/aishell_transcript_v0.8.txt")


def check_corpus(src: Path, progress: bool = False) -> dict[Path, str]:
    """Validate the layout; returns {unreadable wav file: why} (skipped with a warning)."""
    if not src.is_dir():
        raise CorpusNotFoundError(f"Aishell-1 directory {src} does not exist")
    if not (src / TRANSCRIPT).is_file():
        raise CorpusNotFoundError(f"Aishell-1 at {src} has no transcript file {TRANSCRIPT}")
    wavs = []
    for part in PARTS:
        part_dir = src / "data_aishell" / "wav" / part
        if not part_dir.is_dir():
            raise CorpusNotFoundError(f"Aishell-1 at {src} has no {part_dir.relative_to(src)}")
        found = sorted(part_dir.rglob("*.wav"))
        if not found:
            raise EmptySplitError(f"Aishell-1 split {part} ({part_dir}) has no wav files")
        wavs += found
    return unreadable_audio(wavs, desc="check audio" if progress else None)


def aishell_manifests(src: Path, progress: bool = False) -> dict[str, tuple]:
    """{part: (RecordingSet, SupervisionSet, drops)} for train, dev and test;
    drops: {utterance id: (why, file)} of the unreadable files left out."""
    from lhotse.recipes import prepare_aishell

    bad = check_corpus(src, progress)
    if not bad:
        m = prepare_aishell(src, output_dir=None)
        out = {p: (m[p]["recordings"], m[p]["supervisions"], {}) for p in PARTS}
    else:
        with tempfile.TemporaryDirectory(prefix="aishell-readable-") as tmp:
            mirror = Path(tmp)
            symlink_mirror(src / "data_aishell", mirror / "data_aishell", bad)
            m = prepare_aishell(mirror, output_dir=None)
            drops = {p: {f.stem: (why, str(f)) for f, why in bad.items()
                         if f.relative_to(src / "data_aishell" / "wav").parts[0] == p} for p in PARTS}
            out = {p: (point_back(m[p]["recordings"], mirror, src.resolve()), m[p]["supervisions"], drops[p])
                   for p in PARTS}
    for part, (_, sups, _) in out.items():
        if len(sups) == 0:
            raise EmptySplitError(f"Aishell-1 split {part} has no transcribed utterances")
    return out


# --------------------------------------------------------------------------- recipe

class AishellRecipe(Recipe):
    """Aishell-1: train, dev (validates) and test (scored), character units (CER)."""

    name = "aishell"
    test_splits = ("test",)
    train_hours_known = 150.0 * 3

    def identity(self, src: Path, opts) -> dict:
        return {"src": str(src), "train_set": None}

    def manifests(self, ctx: Context, opts) -> Layout:
        if not all(ctx.have(p) for p in PARTS):
            for part, (recs, sups, drops) in aishell_manifests(ctx.src, ctx.progress).items():
                ctx.save(part, recs, sups, drops)
        return Layout(train_parts=["train"], eval_parts=["dev", "test"], valid="dev", tests=["test"],
                      unit="char", info={"corpus": "aishell", "source": str(ctx.src), "parts": list(PARTS)})


RECIPE = AishellRecipe()
