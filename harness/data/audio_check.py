"""Audio checks before and after a lhotse recipe: unreadable files, sample rates.

lhotse's recipes crash on an unreadable file; the harness skips such files
with a warning that names them: the recipe then runs on a mirror of the corpus
folder made of symlinks, without those files, and the recordings are pointed
back at the real files afterwards. Recordings at another sample rate than the
features' 16 kHz are resampled (lhotse's ``Recording.resample``: the manifest
records the transform, the audio is resampled when read), never dropped.
"""
from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Callable, Iterable

from .changes import warn

#: the sample rate of the fbank features (as in the authors' recipes)
SAMPLE_RATE = 16000


def unreadable_audio(files: Iterable[Path], desc: str | None = None) -> dict[Path, str]:
    """{file: why} for the files whose header soundfile cannot read; each is warned about.

    ``desc``: show a progress bar with this label.
    """
    import soundfile as sf
    from tqdm import tqdm

    files = list(files)
    bad = {}
    for f in tqdm(files, desc=desc, unit="file", disable=desc is None):
        try:
            info = sf.info(str(f))
            if info.frames <= 0:
                raise RuntimeError("no samples")
        except Exception as e:  # noqa: BLE001 - any failure means unreadable
            bad[Path(f)] = f"unreadable audio: {type(e).__name__}: {e}"
            warn(f"skipping unreadable audio file {f}: {type(e).__name__}: {e}")
    return bad


def resample_recordings(recordings, label: str, rate: int = SAMPLE_RATE):
    """(RecordingSet at ``rate``, [(recording, original rate)] of those resampled).

    One note (a warning line) per call names the rates found; ``label`` says
    which corpus and split.
    """
    from lhotse import RecordingSet

    out, changed = [], []
    for rec in recordings:
        if rec.sampling_rate != rate:
            changed.append((rec, rec.sampling_rate))
            rec = rec.resample(rate)
        out.append(rec)
    if changed:
        rates = Counter(r for _, r in changed)
        found = ", ".join(f"{n} at {r} Hz" for r, n in sorted(rates.items()))
        warn(f"{label}: {len(changed)} of {len(out)} recordings resampled to {rate} Hz "
             f"({found}; e.g. {changed[0][0].sources[0].source})")
    return RecordingSet.from_recordings(out), changed


def set_channels(recordings, supervisions, channel: int | None, label: str):
    """(supervisions, [(supervision, change kind, why, source)]): the supervisions of
    multi-channel recordings set to all their channels (``channel`` None: the features mix
    them down, their mean) or to ``channel``; one note (a warning line) per call.

    Without this lhotse would read channel 0 alone, silently."""
    from lhotse import SupervisionSet
    from lhotse.utils import fastcopy

    from .errors import DataError

    recs = {r.id: r for r in recordings}
    out, changed = [], []
    for sup in supervisions:
        rec = recs.get(sup.recording_id)
        if rec is not None and rec.num_channels > 1:
            ids = list(rec.channel_ids)
            src = str(rec.sources[0].source)
            if channel is None:
                sup = fastcopy(sup, channel=ids)
                changed.append((sup, "mixed_down", f"{len(ids)} channels mixed down (their mean)", src))
            elif channel in ids:
                sup = fastcopy(sup, channel=channel)
                changed.append((sup, "channel_picked", f"channel {channel} of {len(ids)}", src))
            else:
                raise DataError(f"{label}: recording {rec.id} ({src}) has channels {ids}, and the option "
                                f"channel={channel} names none of them; allowed: one of {ids}, or none "
                                "(mix them down)")
        out.append(sup)
    if changed:
        what = "mixed down" if channel is None else f"reduced to channel {channel}"
        warn(f"{label}: {len(changed)} of {len(out)} utterances have multi-channel audio, {what} "
             f"(e.g. {changed[0][3]})")
    return SupervisionSet.from_segments(out), changed


def symlink_mirror(src: Path, dst: Path, skip: set[Path],
                   rewrite: Callable[[Path, str], str] | None = None) -> None:
    """Mirror ``src`` into ``dst`` with symlinks, leaving out ``skip``.

    Text files for which ``rewrite(path, text)`` is given are copied rewritten
    (e.g. transcripts without the skipped utterances) instead of linked.
    """
    for root, _, files in os.walk(src):
        out = dst / Path(root).relative_to(src)
        out.mkdir(parents=True, exist_ok=True)
        for name in files:
            path = Path(root) / name
            if path in skip:
                continue
            if rewrite is not None and name.endswith(".txt"):
                (out / name).write_text(rewrite(path, path.read_text(encoding="utf-8")), encoding="utf-8")
            else:
                (out / name).symlink_to(path.resolve())


def point_back(recordings, mirror: Path, real: Path):
    """Recordings found through ``mirror`` re-pointed at the files under ``real``."""
    from lhotse import RecordingSet
    from lhotse.utils import fastcopy

    out = []
    for rec in recordings:
        sources = [fastcopy(s, source=str(real / Path(s.source).relative_to(mirror)))
                   if s.type == "file" and Path(s.source).is_relative_to(mirror) else s
                   for s in rec.sources]
        out.append(fastcopy(rec, sources=sources))
    return RecordingSet.from_recordings(out)
