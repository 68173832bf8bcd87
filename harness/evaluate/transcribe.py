"""Audio files -> text with a trained model (what ``harness transcribe`` runs).

Each file is read through lhotse (``Recording.from_file``: soundfile, and the
other audio backends lhotse has, e.g. ffmpeg for mp3), mixed down to one
channel and resampled to 16 kHz when it is not already, with a note saying so.
Features are the training pipeline's: lhotse's 80-bin Fbank (25 ms window,
10 ms shift, :func:`harness.data.features.fbank_extractor`) on the 16 kHz
samples. Files are sorted by duration and decoded in batches of at most
``max_duration`` seconds (padded length x utterances), then reported in the
order given. A file that cannot be read (missing, not audio, too short for the
encoder) is a :class:`Failure`; the others are still transcribed.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from harness.data.features import fbank_extractor
from harness.decoding import decode

SAMPLE_RATE = 16000
#: fbank frames per second (10 ms shift)
FRAME_RATE = 100


@dataclass
class Transcript:
    path: str
    text: str
    duration: float          # seconds of audio
    seconds: float = 0.0     # this file's share of its batch's decoding time (by frames)
    notes: list[str] = field(default_factory=list)


@dataclass
class Failure:
    path: str
    reason: str


@dataclass
class _Input:
    index: int
    path: str
    feats: torch.Tensor      # (T, 80)
    duration: float
    notes: list[str]
    load_seconds: float


def load_audio(path: str | Path) -> tuple[np.ndarray, list[str]]:
    """(16 kHz mono float32 samples, notes) of an audio file; raises ``ValueError`` if unreadable."""
    from lhotse import Recording

    p = Path(path)
    if not p.exists():
        raise ValueError("no such file")
    if p.is_dir():
        raise ValueError("is a directory, not an audio file")
    try:
        rec = Recording.from_file(p)
    except Exception as e:  # noqa: BLE001 - lhotse/soundfile raise many kinds for non-audio
        raise ValueError(f"not readable as audio: {_first_line(e) or type(e).__name__}") from None
    notes = []
    if rec.num_channels > 1:
        notes.append(f"{rec.num_channels} channels mixed down to mono")
    if rec.sampling_rate != SAMPLE_RATE:
        notes.append(f"resampled from {rec.sampling_rate} Hz to {SAMPLE_RATE} Hz")
        rec = rec.resample(SAMPLE_RATE)
    try:
        samples = rec.load_audio()                        # (channels, samples)
    except Exception as e:  # noqa: BLE001
        raise ValueError(f"audio could not be decoded ({type(e).__name__}: {_first_line(e)})") from None
    samples = np.asarray(samples, dtype=np.float32)
    if samples.ndim == 2:
        samples = samples.mean(axis=0)
    return samples, notes


def _first_line(e: BaseException) -> str:
    """One line of an exception's message; of lhotse's one-per-backend message, what each
    backend that said something said."""
    text = str(e).strip()
    said = [line.rsplit(">: ", 1)[-1].strip() for line in text.splitlines() if line.startswith("Exception #")]
    said = [s for s in said if s and not s.startswith("<class")]
    if said:
        return "; ".join(said)[:300]
    return text.splitlines()[0][:300] if text else ""


def features(samples: np.ndarray, extractor: Any = None) -> torch.Tensor:
    """(T, 80) fbank of 16 kHz mono samples, as training computes it."""
    extractor = extractor or fbank_extractor()
    return torch.from_numpy(np.asarray(extractor.extract(samples, sampling_rate=SAMPLE_RATE),
                                       dtype=np.float32))


def duration_batches(lengths: Sequence[int], max_frames: int) -> list[list[int]]:
    """Indices grouped longest first so that each batch's padded size (longest x count) fits
    ``max_frames`` (a longer file alone is its own batch)."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches: list[list[int]] = []
    for i in order:
        if batches and lengths[batches[-1][0]] * (len(batches[-1]) + 1) <= max_frames:
            batches[-1].append(i)
        else:
            batches.append([i])
    return batches


@torch.no_grad()
def transcribe(model: torch.nn.Module, to_text: Callable[[list[int]], str], paths: Sequence[str],
               method: str, beam: int = 4, max_duration: float = 200.0,
               device: torch.device | str = "cpu",
               unk_id: int | None = None) -> tuple[list[Transcript | Failure], dict[str, float]]:
    """One :class:`Transcript` or :class:`Failure` per path, in order, and the run's totals:
    ``audio_seconds``, ``seconds`` (reading, features and decoding) and ``rtfx`` (audio
    seconds per second of processing, as the open ASR leaderboard reports it).
    ``unk_id`` (the tokenizer's ``<unk>``) is never emitted by the transducer searches."""
    from lhotse.utils import LOG_EPSILON

    start = time.perf_counter()
    model = model.to(device).eval()
    min_frames = int(getattr(model.encoder_embed, "min_frames", 9))
    extractor = fbank_extractor()
    results: list[Transcript | Failure | None] = [None] * len(paths)
    inputs: list[_Input] = []
    for i, path in enumerate(paths):
        t0 = time.perf_counter()
        try:
            samples, notes = load_audio(path)
            feats = features(samples, extractor) if samples.size else torch.zeros(0, 80)
        except ValueError as e:
            results[i] = Failure(str(path), str(e))
            continue
        if feats.shape[0] < min_frames:
            results[i] = Failure(str(path), f"too short: {samples.size / SAMPLE_RATE:.3f} s gives "
                                            f"{feats.shape[0]} feature frames; the encoder needs {min_frames}")
            continue
        inputs.append(_Input(i, str(path), feats, samples.size / SAMPLE_RATE, notes, time.perf_counter() - t0))
    max_frames = max(1, int(max_duration * FRAME_RATE))
    for batch in duration_batches([x.feats.shape[0] for x in inputs], max_frames):
        t0 = time.perf_counter()
        items = [inputs[j] for j in batch]
        lens = torch.tensor([x.feats.shape[0] for x in items])
        x = torch.full((len(items), int(lens.max()), items[0].feats.shape[1]), LOG_EPSILON)
        for k, item in enumerate(items):
            x[k, :item.feats.shape[0]] = item.feats
        hyps = decode(model, x.to(device), lens.to(device), method, beam=beam, unk_id=unk_id)
        spent = time.perf_counter() - t0
        total = float(lens.sum())
        for item, hyp, n in zip(items, hyps, lens.tolist()):
            results[item.index] = Transcript(item.path, to_text(hyp), item.duration,
                                             item.load_seconds + spent * n / total, item.notes)
    seconds = time.perf_counter() - start
    audio = sum(x.duration for x in inputs)
    totals = {"files": len(paths), "failed": sum(isinstance(r, Failure) for r in results),
              "audio_seconds": audio, "seconds": seconds, "rtfx": audio / seconds if seconds > 0 else 0.0}
    return [r for r in results if r is not None], totals
