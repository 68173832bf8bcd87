"""Cuts with precomputed 80-dim fbank, stored with lilcom (as the authors' recipes do).

Order matters and is enforced here: cuts are trimmed to their supervisions
(made eager, since lhotse's ``trim_to_supervisions`` is lazy), then
speed-perturbed (perturbing a cut that has features drops them), then
features are computed. An audio file that cannot be decoded is skipped with a
warning that names it.
"""
from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from harness.atomic import remove
from harness.processes import child_of_this_process

from .changes import warn

NUM_MEL_BINS = 80
SPEED_FACTORS = (0.9, 1.1)
CHUNK_CUTS = 200  # cuts per feature file / per progress step


def require_lhotse() -> None:
    """Import lhotse's undeclared dependencies first, with a clear error if missing."""
    for module, why in (("urllib3", "imported by lhotse"), ("lilcom", "lhotse's lilcom feature storage")):
        try:
            __import__(module)
        except ImportError as e:
            raise ImportError(f"the data pipeline needs the {module!r} package ({why}, but not "
                              f"declared by lhotse): pip install {module}") from e


def fbank_extractor():
    """lhotse's own Fbank: 80 bins, 25 ms window, 10 ms shift."""
    require_lhotse()
    from lhotse import Fbank, FbankConfig

    return Fbank(FbankConfig(num_mel_bins=NUM_MEL_BINS, frame_length=0.025, frame_shift=0.01))


def cuts_from_manifests(recordings, supervisions):
    """One cut per supervision, eager (lhotse's ``trim_to_supervisions`` is lazy); a
    supervision over several channels (harness.data.audio_check.set_channels) gives a
    cut of their mean."""
    from lhotse import CutSet

    cuts = CutSet.from_manifests(recordings=recordings, supervisions=supervisions)
    cuts = cuts.trim_to_supervisions(keep_overlapping=False).to_eager()
    if any(isinstance(c.channel, list) and len(c.channel) > 1 for c in cuts):
        cuts = CutSet.from_cuts(mixed_down(c) if isinstance(c.channel, list) and len(c.channel) > 1 else c
                                for c in cuts)
    return cuts


def mixed_down(cut):
    """A multi-channel cut as the mean of its channels (a MixedCut of its mono cuts, each at
    1/N volume; the supervisions kept once)."""
    from lhotse.cut import MixedCut, MixTrack
    from lhotse.utils import fastcopy

    monos = cut.to_mono()
    n = len(monos)
    tracks = [MixTrack(cut=fastcopy(m.perturb_volume(1.0 / n, affix_id=False),
                                    supervisions=m.supervisions if i == 0 else []))
              for i, m in enumerate(monos)]
    return MixedCut(id=cut.id, tracks=tracks)


def speed_perturb(cuts, factors: Sequence[float] = SPEED_FACTORS):
    """The original cuts plus a copy at each factor (before features: perturbing drops them)."""
    if any(c.has_features for c in cuts):
        raise ValueError("speed_perturb: cuts already have features, which perturbation would "
                         "silently drop; perturb before computing features")
    out = cuts
    for f in factors:
        out = out + cuts.perturb_speed(f)
    return out.to_eager()


def _compute_chunk(args: tuple[list, str]) -> tuple[list, list[tuple[str, str]]]:
    """Worker: features for one chunk of cuts into one lilcom file."""
    import torch
    from lhotse import LilcomChunkyWriter

    torch.set_num_threads(1)
    cuts, storage = args
    extractor = fbank_extractor()
    done, failed = [], []
    with LilcomChunkyWriter(storage) as writer:
        for cut in cuts:
            try:
                done.append(cut.compute_and_store_features(extractor, writer))
            except Exception as e:  # noqa: BLE001 - any decode failure skips the cut
                source = _audio_source(cut)
                failed.append((cut.id, f"{source}: {type(e).__name__}: {e}"))
    return done, failed


def _audio_source(cut) -> str:
    rec = getattr(cut, "recording", None)
    if rec is not None and rec.sources:
        return str(rec.sources[0].source)
    return cut.id


def compute_features(cuts, storage_dir: Path, num_jobs: int = 1,
                     progress: Callable[[int], None] | None = None,
                     skipped: Callable[[str, str], None] | None = None):
    """Fbank for every cut, stored under ``storage_dir`` (replaced if present).

    Returns the CutSet of cuts whose audio decoded; each skipped cut is logged
    and warned about with the audio file it came from, and passed to
    ``skipped(cut_id, why)``.
    """
    from lhotse import CutSet

    storage_dir = Path(storage_dir)
    remove(storage_dir)  # leftovers of an interrupted run are never reused
    storage_dir.mkdir(parents=True)  # lilcom's writer needs its folder to exist
    cut_list = list(cuts)
    chunks = [(cut_list[i:i + CHUNK_CUTS], str(storage_dir / f"feats-{i // CHUNK_CUTS:05d}"))
              for i in range(0, len(cut_list), CHUNK_CUTS)]
    done: list = []
    failed: list[tuple[str, str]] = []

    def collect(chunk, result) -> None:
        done.extend(result[0])
        failed.extend(result[1])
        if progress:
            progress(len(chunk[0]))

    for chunk, result in map_in_processes(_compute_chunk, chunks, num_jobs):
        collect(chunk, result)
    for cut_id, why in failed:
        warn(f"skipping cut {cut_id}: its audio could not be read ({why})")
        if skipped:
            skipped(cut_id, why)
    return CutSet.from_cuts(done)


def mp_context():
    """Worker processes: fork on Linux (cheap, shares loaded modules), spawn elsewhere."""
    import sys

    return get_context("fork" if sys.platform.startswith("linux") else "spawn")


def map_in_processes(fn: Callable, items: list, num_jobs: int) -> Iterator[tuple[Any, Any]]:
    """``(item, fn(item))`` in order: in this process for one job or one item, else
    in a pool of ``num_jobs`` worker processes."""
    if num_jobs <= 1 or len(items) <= 1:
        for item in items:
            yield item, fn(item)
        return
    # workers die with this process (they close its lock files at fork: harness.locks)
    with ProcessPoolExecutor(max_workers=num_jobs, mp_context=mp_context(),
                             initializer=child_of_this_process()) as ex:
        yield from zip(items, ex.map(fn, items))


def default_num_jobs() -> int:
    return max(1, min(8, os.cpu_count() or 1))
