"""One's own corpus as Kaldi data directories: ``data prepare --corpus kaldi --src DIR``.

``DIR`` holds one Kaldi data directory per split (``wav.scp``, ``text``,
``utt2spk``, optional ``segments``); the directory's name decides the split's
role (:func:`harness.data.recipe.split_role`): train, dev or test. Each is read
through lhotse's Kaldi import (``lhotse.kaldi.load_kaldi_data_dir``), after
these checks: a missing file of the directory, a ``wav.scp`` entry whose audio
file does not exist, or a command (``... |``, not read here) is an error naming
the line; unreadable audio, and utterances with an empty or no transcript, are
dropped with a warning and recorded in ``changes.jsonl``. lhotse's import takes
one sampling rate for every file and channel 0; the recordings are therefore
read again from the files (``Recording.from_file``), so that any sampling rate
and channel count reach the shared checks (resampling, mixing down).
Relative paths in ``wav.scp`` are taken from the current directory, as Kaldi does.
"""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from .audio_check import unreadable_audio
from .changes import warn
from .errors import CorpusNotFoundError, DataError, EmptySplitError, MissingAudioError
from .recipe import OwnCorpusRecipe, check_texts

REQUIRED = ("wav.scp", "text", "utt2spk")


def find_dirs(src: Path) -> dict[str, Path]:
    """{split: data directory} of ``src``'s subdirectories holding a wav.scp."""
    if (src / "wav.scp").is_file():
        raise DataError(f"{src} is one Kaldi data directory; allowed: a folder with one data directory "
                        "per split (e.g. train/, dev/, test/)")
    found = {d.name: d for d in sorted(src.iterdir()) if d.is_dir() and (d / "wav.scp").is_file()}
    if not found:
        raise CorpusNotFoundError(f"{src} holds no Kaldi data directories (subfolders with a wav.scp); "
                                  "allowed: one per split (train/, dev/, test/)")
    for d in found.values():
        missing = [f for f in REQUIRED if not (d / f).is_file()]
        if missing:
            raise DataError(f"{d}: Kaldi data directory without {', '.join(missing)}; allowed: wav.scp, "
                            "text, utt2spk and an optional segments")
    return found


def _lines(path: Path) -> list[tuple[int, str, str]]:
    """(line number, first field, rest) of a Kaldi table file."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 ({e.reason} at byte {e.start}); allowed: UTF-8 text") from None
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        if line.strip():
            fields = line.strip().split(maxsplit=1)
            out.append((n, fields[0], fields[1].strip() if len(fields) > 1 else ""))
    return out


def _write(path: Path, rows: list[tuple[str, str]]) -> None:
    path.write_text("".join(f"{k} {v}\n" for k, v in rows), encoding="utf-8")


def wav_files(d: Path) -> dict[str, Path]:
    """{recording: audio file} of ``d/wav.scp``; a command or a missing file is an error."""
    wavs: dict[str, Path] = {}
    for n, rec, where in _lines(d / "wav.scp"):
        if where.endswith("|"):
            raise DataError(f"{d / 'wav.scp'}:{n}: recording {rec} is a command; allowed: an audio file path "
                            "(write the audio to files first)")
        if not Path(where).is_file():
            raise MissingAudioError(f"{d / 'wav.scp'}:{n}: recording {rec} has no audio file {where}")
        wavs[rec] = Path(where).resolve()
    return wavs


def read_data_dir(d: Path, split: str, progress: bool = False):
    """(RecordingSet, SupervisionSet, drops) of one Kaldi data directory (module docstring)."""
    from lhotse import Recording, RecordingSet
    from lhotse.kaldi import load_kaldi_data_dir

    wavs = wav_files(d)
    texts = {u: t for _, u, t in _lines(d / "text")}
    spk = {u: s for _, u, s in _lines(d / "utt2spk")}
    segments = {u: rest.split() for _, u, rest in _lines(d / "segments")} if (d / "segments").is_file() else None
    if segments is not None:
        bad = next((u for u, f in segments.items() if len(f) != 3 or f[0] not in wavs), None)
        if bad is not None:
            raise DataError(f"{d / 'segments'}: utterance {bad}: {' '.join(segments[bad])}; allowed: "
                            "RECORDING START END with a recording of wav.scp")
        utt_rec = {u: f[0] for u, f in segments.items()}
    else:
        odd = next((u for u in spk if u not in wavs), None)
        if odd is not None:
            raise DataError(f"{d / 'utt2spk'}: utterance {odd} is no recording of wav.scp, and there is no "
                            "segments file; allowed: utterance ids equal to recording ids, or a segments file")
        utt_rec = {u: u for u in wavs}
    no_spk = next((u for u in utt_rec if u not in spk), None)
    if no_spk is not None:
        raise DataError(f"{d / 'utt2spk'}: no speaker for utterance {no_spk}; allowed: one line per utterance")
    bad_audio = unreadable_audio(wavs.values(), desc=f"check audio {split}" if progress else None)
    drops: dict[str, tuple[str, str]] = {}
    for u, r in utt_rec.items():
        if wavs[r] in bad_audio:
            drops[u] = (bad_audio[wavs[r]], str(wavs[r]))
        elif not texts.get(u, "").strip():
            drops[u] = ("empty transcript" if u in texts else "no line in text", str(d / "text"))
            warn(f"skipping {u}: {d / 'text'} gives it no transcript")
    kept = [u for u in utt_rec if u not in drops]
    if not kept:
        raise EmptySplitError(f"{d}: split {split} has no utterance with readable audio and a transcript")
    recs = {r: Recording.from_file(wavs[r], recording_id=r) for r in sorted({utt_rec[u] for u in kept})}
    with tempfile.TemporaryDirectory(prefix="kaldi-checked-") as tmp:
        t = Path(tmp)
        _write(t / "wav.scp", [(r, str(wavs[r])) for r in recs])
        _write(t / "reco2dur", [(r, repr(rec.duration)) for r, rec in recs.items()])
        _write(t / "text", [(u, texts[u]) for u in kept])
        _write(t / "utt2spk", [(u, spk[u]) for u in kept])
        if segments is not None:
            _write(t / "segments", [(u, " ".join(segments[u])) for u in kept])
        _, sups, _ = load_kaldi_data_dir(t, sampling_rate=16000, use_reco2dur=True)
    return RecordingSet.from_recordings(recs.values()), sups, drops


class KaldiRecipe(OwnCorpusRecipe):
    name = "kaldi"
    source_what = "Kaldi data directories, one per split (wav.scp, text, utt2spk, segments)"

    def find(self, src: Path) -> dict[str, Path]:
        return find_dirs(src)

    def check_split(self, opts, split: str, d: Path) -> None:
        wav_files(d)
        check_texts(self, opts, split, {u: t for _, u, t in _lines(d / "text")}, str(d / "text"))

    def read_split(self, split: str, d: Path, progress: bool) -> tuple:
        return read_data_dir(d, split, progress)

    def describe(self, found: dict[str, Path]) -> dict[str, Any]:
        return {"dirs": {s: d.name for s, d in found.items()}}


RECIPE = KaldiRecipe()
