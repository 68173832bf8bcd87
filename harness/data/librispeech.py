"""LibriSpeech from a local copy, through ``lhotse.recipes.prepare_librispeech``.

Before the recipe runs, each part is checked: transcripts must be UTF-8, every
transcript line must have its FLAC (else :class:`MissingAudioError`), a part
must have utterances (else :class:`EmptySplitError`); unreadable FLACs and
lines without text are skipped with a warning (and returned, so that
preparation records them in ``changes.jsonl``).
"""
from __future__ import annotations

import tempfile
from pathlib import Path

from .audio_check import point_back, symlink_mirror, unreadable_audio
from .changes import warn
from .errors import CorpusNotFoundError, DataError, EmptySplitError, MissingAudioError
from .recipe import Context, Layout, Recipe
from .transcripts import LIBRISPEECH_ALPHABET, LIBRISPEECH_ALPHABET_NAME, parse_transcript_line

TRAIN_SETS = {"100": ("train-clean-100",),
              "960": ("train-clean-100", "train-clean-360", "train-other-500")}
EVAL_PARTS = ("dev-clean", "dev-other", "test-clean", "test-other")
VALID_PART = "dev-clean"
TEST_PARTS = ("test-clean", "test-other")


def select_parts(src: Path, train_set: str = "auto") -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(training parts, dev/test parts) to prepare from the copy at ``src``."""
    if not src.is_dir():
        raise CorpusNotFoundError(f"LibriSpeech directory {src} does not exist")
    present = {p.name for p in src.iterdir() if p.is_dir()}
    if train_set == "auto":
        train_set = "960" if set(TRAIN_SETS["960"]) <= present else "100"
    if train_set not in TRAIN_SETS:
        raise ValueError(f"train_set={train_set!r}; allowed: auto, {', '.join(TRAIN_SETS)}")
    needed = TRAIN_SETS[train_set] + (VALID_PART,) + TEST_PARTS
    missing = [p for p in needed if p not in present]
    if missing:
        raise CorpusNotFoundError(
            f"LibriSpeech at {src} lacks {', '.join(missing)} (found: {', '.join(sorted(present)) or 'nothing'}); "
            f"the {train_set} h setup needs {', '.join(needed)}")
    return TRAIN_SETS[train_set], tuple(p for p in EVAL_PARTS if p in present)


def check_part(part_dir: Path, progress: bool = False) -> dict[str, tuple[str, str]]:
    """Validate one part's transcripts against its audio.

    Returns {utterance id: (why, file)} of the utterances to drop: unreadable
    audio, or a transcript line with an id and no text (lhotse's recipe cannot
    parse one).
    """
    transcripts = sorted(part_dir.rglob("*.trans.txt"))
    drops: dict[str, tuple[str, str]] = {}
    flacs = {}
    for trans in transcripts:
        try:
            text = trans.read_text(encoding="utf-8")
        except UnicodeDecodeError as e:
            line = trans.read_bytes()[: e.start].count(b"\n") + 1
            raise DataError(f"{trans}:{line}: transcript is not UTF-8 ({e.reason} at byte {e.start}); "
                            "allowed: UTF-8 text") from None
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            utt, words = parse_transcript_line(line)
            flac = trans.parent / f"{utt}.flac"
            if not flac.is_file():
                raise MissingAudioError(f"{trans}:{n}: transcript line for {utt} has no audio file {flac}")
            if not words:
                drops[utt] = (f"empty transcript ({trans.name}:{n})", str(trans))
                warn(f"skipping {utt}: {trans}:{n} has an utterance id and no transcript")
                continue
            flacs[flac] = utt
    if not flacs and not drops:
        raise EmptySplitError(f"LibriSpeech part {part_dir} has no transcribed utterances (*.trans.txt)")
    bad = unreadable_audio(flacs, desc=f"check audio {part_dir.name}" if progress else None)
    if len(bad) == len(flacs):
        raise EmptySplitError(f"LibriSpeech part {part_dir}: none of its {len(flacs) + len(drops)} "
                              "utterances has readable audio and a transcript")
    drops.update({flacs[f]: (why, str(f)) for f, why in bad.items()})
    return drops


def librispeech_manifests(src: Path, part: str, num_jobs: int = 1, progress: bool = False):
    """(RecordingSet, SupervisionSet, drops) of one part, through lhotse's recipe;
    drops: {utterance id: (why, file)} of the utterances left out."""
    from lhotse.recipes import prepare_librispeech

    part_dir = src / part
    drops = check_part(part_dir, progress)
    if not drops:
        m = prepare_librispeech(src, dataset_parts=[part], output_dir=None, num_jobs=num_jobs)[part]
        return m["recordings"], m["supervisions"], drops
    unreadable = {Path(f) for why, f in drops.values() if f.endswith(".flac")}

    def drop_lines(path: Path, text: str) -> str:
        keep = [l for l in text.splitlines() if l.strip() and parse_transcript_line(l)[0] not in drops]
        return "".join(l + "\n" for l in keep)

    with tempfile.TemporaryDirectory(prefix="librispeech-readable-") as tmp:
        mirror = Path(tmp)
        symlink_mirror(part_dir, mirror / part, unreadable, rewrite=drop_lines)
        m = prepare_librispeech(mirror, dataset_parts=[part], output_dir=None, num_jobs=num_jobs)[part]
        return point_back(m["recordings"], mirror, src.resolve()), m["supervisions"], drops


# --------------------------------------------------------------------------- recipe

class LibriSpeechRecipe(Recipe):
    """LibriSpeech: 100 h or 960 h of training parts, dev-clean validates, test-clean and
    test-other are scored; word units (BPE); transcripts checked against its alphabet."""

    name = "librispeech"
    test_splits = TEST_PARTS
    alphabet = LIBRISPEECH_ALPHABET
    alphabet_name = LIBRISPEECH_ALPHABET_NAME
    train_hours_known = 960.0 * 3

    def identity(self, src: Path, opts) -> dict:
        if opts.train_set != "auto" and opts.train_set not in TRAIN_SETS:
            raise DataError(f"train_set={opts.train_set!r}; allowed: auto, {', '.join(TRAIN_SETS)}")
        return {"src": str(src), "train_set": opts.train_set}

    def check_source(self, src: Path, opts, deep: bool = False) -> None:
        select_parts(src, opts.train_set)

    def manifests(self, ctx: Context, opts) -> Layout:
        train_parts, eval_parts = select_parts(ctx.src, opts.train_set)
        for part in train_parts + eval_parts:
            if not ctx.have(part):
                recs, sups, drops = librispeech_manifests(ctx.src, part, num_jobs=ctx.num_jobs,
                                                          progress=ctx.progress)
                ctx.save(part, recs, sups, drops)
        info = {"corpus": "librispeech", "source": str(ctx.src), "train_parts": list(train_parts),
                "eval_parts": list(eval_parts)}
        return Layout(train_parts=list(train_parts), eval_parts=list(eval_parts), valid=VALID_PART,
                      tests=list(TEST_PARTS), unit="word", info=info, combined="train-960")


RECIPE = LibriSpeechRecipe()
