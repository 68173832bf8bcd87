"""LibriSpeech from a local copy, through ``lhotse.recipes.prepare_librispeech``.

Before the recipe runs, each part is checked: every transcript line must have
its FLAC (else :class:`MissingAudioError`), a part must have utterances (else
:class:`EmptySplitError`), and unreadable FLACs are skipped with a warning.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

from .audio_check import point_back, symlink_mirror, unreadable_audio
from .errors import CorpusNotFoundError, EmptySplitError, MissingAudioError

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


def check_part(part_dir: Path, progress: bool = False) -> set[Path]:
    """Validate one part's transcripts against its audio; returns unreadable files."""
    transcripts = sorted(part_dir.rglob("*.trans.txt"))
    lines = 0
    flacs = []
    for trans in transcripts:
        for n, line in enumerate(trans.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            utt = line.split(maxsplit=1)[0]
            flac = trans.parent / f"{utt}.flac"
            if not flac.is_file():
                raise MissingAudioError(f"{trans}:{n}: transcript line for {utt} has no audio file {flac}")
            flacs.append(flac)
            lines += 1
    if lines == 0:
        raise EmptySplitError(f"LibriSpeech part {part_dir} has no transcribed utterances (*.trans.txt)")
    bad = unreadable_audio(flacs, desc=f"check audio {part_dir.name}" if progress else None)
    if len(bad) == lines:
        raise EmptySplitError(f"LibriSpeech part {part_dir}: none of its {lines} audio files is readable")
    return bad


def librispeech_manifests(src: Path, part: str, num_jobs: int = 1, progress: bool = False):
    """(RecordingSet, SupervisionSet) of one part, through lhotse's recipe."""
    from lhotse.recipes import prepare_librispeech

    part_dir = src / part
    bad = check_part(part_dir, progress)
    if not bad:
        m = prepare_librispeech(src, dataset_parts=[part], output_dir=None, num_jobs=num_jobs)[part]
        return m["recordings"], m["supervisions"]
    skip_ids = {p.name[: -len(".flac")] for p in bad}

    def drop_lines(path: Path, text: str) -> str:
        keep = [l for l in text.splitlines() if l.split(maxsplit=1)[:1] and l.split()[0] not in skip_ids]
        return "".join(l + "\n" for l in keep)

    with tempfile.TemporaryDirectory(prefix="librispeech-readable-") as tmp:
        mirror = Path(tmp)
        symlink_mirror(part_dir, mirror / part, bad, rewrite=drop_lines)
        m = prepare_librispeech(mirror, dataset_parts=[part], output_dir=None, num_jobs=num_jobs)[part]
        return point_back(m["recordings"], mirror, src.resolve()), m["supervisions"]
