"""One's own corpus as lhotse manifests: ``data prepare --corpus lhotse --manifests DIR``.

``DIR`` holds one CutSet, or one RecordingSet and one SupervisionSet, per split
(``.jsonl.gz``, ``.jsonl``, ``.json`` or ``.json.gz``). A file's name says its
kind and its split: the word ``cuts``, ``recordings`` or ``supervisions``
between ``_``, and the split before or after it (``mycorpus_cuts_train.jsonl.gz``,
icefall's naming, or ``train_cuts.jsonl.gz``, ``recordings_dev.jsonl.gz``).
The split's name decides its role (:func:`harness.data.recipe.split_role`):
train (several are trained on together), dev (the first validates) and test.

Checked before the shared checks (sample rate, channels, transcript characters):
a recording whose audio file is missing is an error naming it; unreadable audio
and empty transcripts are dropped, with a warning, and recorded in
``changes.jsonl``. Audio at any sampling rate and channel count is accepted.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from .audio_check import unreadable_audio
from .changes import warn
from .errors import CorpusNotFoundError, DataError, EmptySplitError, MissingAudioError
from .recipe import OwnCorpusRecipe, check_texts

SUFFIXES = (".jsonl.gz", ".jsonl", ".json.gz", ".json")
MANIFEST_KINDS = ("cuts", "recordings", "supervisions")


def _split_name(path: Path) -> tuple[str, str]:
    """(kind, split) of a manifest file's name."""
    stem = next(path.name[: -len(s)] for s in SUFFIXES if path.name.endswith(s))
    words = stem.split("_")
    kinds = [i for i, w in enumerate(words) if w in MANIFEST_KINDS]
    if len(kinds) != 1:
        raise DataError(f"{path}: the name says no manifest kind; allowed: a name with one of "
                        f"{', '.join(MANIFEST_KINDS)} between '_' and the split (e.g. mycorpus_cuts_train.jsonl.gz)")
    i = kinds[0]
    after, before = "_".join(words[i + 1:]), "_".join(words[:i])
    split = after or before
    if not split:
        raise DataError(f"{path}: the name says no split; allowed: e.g. {words[i]}_train{path.name[len(stem):]}")
    return words[i], split


def find_manifests(src: Path) -> dict[str, dict[str, Path]]:
    """{split: {kind: file}} of the manifests in ``src``."""
    found: dict[str, dict[str, Path]] = {}
    for path in sorted(src.iterdir()):
        if not path.is_file() or not path.name.endswith(SUFFIXES):
            continue
        kind, split = _split_name(path)
        if kind in found.setdefault(split, {}):
            raise DataError(f"{src}: two {kind} manifests for split {split}: {found[split][kind].name} "
                            f"and {path.name}; allowed: one per split")
        found[split][kind] = path
    if not found:
        raise CorpusNotFoundError(f"{src} holds no lhotse manifests; allowed: files named like "
                                  "mycorpus_cuts_train.jsonl.gz, or *_recordings_SPLIT / *_supervisions_SPLIT pairs")
    for split, kinds in found.items():
        if "cuts" in kinds and len(kinds) > 1:
            raise DataError(f"{src}: split {split} has both cuts and {'/'.join(k for k in kinds if k != 'cuts')} "
                            "manifests; allowed: a CutSet, or a RecordingSet + SupervisionSet pair")
        if "cuts" not in kinds and set(kinds) != {"recordings", "supervisions"}:
            have = next(iter(kinds))
            lack = "supervisions" if have == "recordings" else "recordings"
            raise DataError(f"{kinds[have]}: split {split} has no {lack} manifest beside it; allowed: a CutSet, "
                            "or a RecordingSet + SupervisionSet pair")
    return found


def _load(path: Path, cls_name: str):
    import lhotse

    try:
        manifest = lhotse.load_manifest(path)
    except Exception as e:  # noqa: BLE001 - any failure means not a manifest
        raise DataError(f"{path}: not a readable lhotse manifest ({type(e).__name__}: {e}); "
                        f"allowed: a {cls_name} written by lhotse") from None
    if type(manifest).__name__ != cls_name:
        raise DataError(f"{path}: holds a {type(manifest).__name__}, the name says {cls_name}; "
                        f"allowed: a {cls_name}")
    return manifest


def split_manifests(files: dict[str, Path]):
    """(RecordingSet, SupervisionSet, where) of one split's manifest files."""
    if "cuts" in files:
        cuts = _load(files["cuts"], "CutSet")
        bad = next((c for c in cuts if not c.has_recording), None)
        if bad is not None:
            raise DataError(f"{files['cuts']}: cut {bad.id} has no recording; allowed: cuts with audio "
                            "(the harness computes its own features)")
        recs, sups, _ = cuts.decompose()
        return recs, sups, files["cuts"]
    return _load(files["recordings"], "RecordingSet"), _load(files["supervisions"], "SupervisionSet"), \
        files["supervisions"]


def check_paths(recordings, supervisions, where: Path, split: str) -> dict[Path, str]:
    """{audio file: recording id}; a supervision of no recording, or a missing file, is an error."""
    rec_ids = {r.id for r in recordings}
    lost = next((s for s in supervisions if s.recording_id not in rec_ids), None)
    if lost is not None:
        raise DataError(f"{where}: supervision {lost.id} names recording {lost.recording_id}, which split "
                        f"{split} lacks; allowed: recordings of the split")
    files: dict[Path, str] = {}
    for rec in recordings:
        for s in rec.sources:
            if s.type == "file":
                if not Path(s.source).is_file():
                    raise MissingAudioError(f"{where}: recording {rec.id} has no audio file {s.source}")
                files[Path(s.source)] = rec.id
    return files


def checked(recordings, supervisions, where: Path, split: str, progress: bool = False):
    """(recordings, supervisions, drops) after the checks of the module docstring."""
    from lhotse import RecordingSet, SupervisionSet

    files = check_paths(recordings, supervisions, where, split)
    bad = unreadable_audio(files, desc=f"check audio {split}" if progress else None)
    bad_recs = {files[f]: (why, str(f)) for f, why in bad.items()}
    drops: dict[str, tuple[str, str]] = {}
    kept = []
    for sup in supervisions:
        if sup.recording_id in bad_recs:
            drops[sup.id] = bad_recs[sup.recording_id]
        elif not (sup.text or "").strip():
            drops[sup.id] = ("empty transcript", str(where))
            warn(f"skipping {sup.id}: {where} gives it no transcript")
        else:
            kept.append(sup)
    if not kept:
        raise EmptySplitError(f"{where}: split {split} has no utterance with readable audio and a transcript")
    recordings = RecordingSet.from_recordings(r for r in recordings if r.id not in bad_recs)
    return recordings, SupervisionSet.from_segments(kept), drops


class LhotseRecipe(OwnCorpusRecipe):
    name = "lhotse"
    src_flag = "--manifests"
    source_what = "lhotse manifests, one CutSet or RecordingSet + SupervisionSet per split"

    def find(self, src: Path) -> dict[str, dict[str, Path]]:
        return find_manifests(src)

    def check_split(self, opts, split: str, files: dict[str, Path]) -> None:
        recs, sups, where = split_manifests(files)
        check_paths(recs, sups, where, split)
        check_texts(self, opts, split, {s.id: s.text for s in sups}, str(where))

    def read_split(self, split: str, files: dict[str, Path], progress: bool) -> tuple:
        recs, sups, where = split_manifests(files)
        return checked(recs, sups, where, split, progress)

    def describe(self, found: dict[str, dict[str, Path]]) -> dict[str, Any]:
        return {"manifests": {s: {k: p.name for k, p in f.items()} for s, f in found.items()}}


RECIPE = LhotseRecipe()
