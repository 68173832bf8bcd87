"""Find audio files that cannot be read, and hide them from a lhotse recipe.

lhotse's recipes crash on an unreadable file; the harness skips such files
with a warning that names them: the recipe then runs on a mirror of the corpus
folder made of symlinks, without those files, and the recordings are pointed
back at the real files afterwards.
"""
from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path
from typing import Callable, Iterable

log = logging.getLogger(__name__)


def unreadable_audio(files: Iterable[Path], desc: str | None = None) -> set[Path]:
    """Files whose header soundfile cannot read; each is logged and warned about.

    ``desc``: show a progress bar with this label.
    """
    import soundfile as sf
    from tqdm import tqdm

    files = list(files)
    bad = set()
    for f in tqdm(files, desc=desc, unit="file", disable=desc is None):
        try:
            info = sf.info(str(f))
            if info.frames <= 0:
                raise RuntimeError("no samples")
        except Exception as e:  # noqa: BLE001 - any failure means unreadable
            msg = f"skipping unreadable audio file {f}: {type(e).__name__}: {e}"
            log.warning(msg)
            warnings.warn(msg, stacklevel=2)
            bad.add(Path(f))
    return bad


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
