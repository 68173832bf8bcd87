"""The built-in synthetic corpus: plan utterances, synthesize them, build lhotse manifests.

Audio is written in LibriSpeech's layout (``part/speaker/chapter/spk-chap-utt.flac``
with ``spk-chap.trans.txt`` beside it), so the same folder also serves as a
LibriSpeech stand-in (:func:`write_librispeech_layout`). Utterances are
synthesized in fixed shards, each by a freshly loaded engine, so the audio
depends on the seed and tier only, never on the number of worker processes.
"""
from __future__ import annotations

import logging
import os
import random
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

from harness.atomic import atomic_path, clean_stale_tmp
from ..features import map_in_processes
from .espeak_engine import TARGET_SAMPLE_RATE, espeak_paths
from .grammar import Lexicon, SentenceGenerator
from .tiers import EXCLUDED_VARIANTS, SPLITS, SyntheticTier

log = logging.getLogger(__name__)

SHARD_SIZE = 40
#: LibriSpeech part that stands for each synthetic split in the LibriSpeech layout
LIBRISPEECH_PARTS = {"train": "train-clean-100", "dev": "dev-clean",
                     "test": "test-clean", "test_held_out": "test-other"}
_CHAPTER = {split: i + 1 for i, split in enumerate(SPLITS)}


@dataclass(frozen=True)
class Utterance:
    """One planned utterance (all a worker needs to synthesize it)."""

    id: str          # LibriSpeech-style "speaker-chapter-index"
    split: str
    speaker: str     # numeric speaker id
    voice: str       # eSpeak voice+variant, e.g. "en-us+m3"
    text: str
    rate: int
    pitch: int
    seed: int

    @property
    def chapter(self) -> str:
        return self.id.split("-")[1]


def available_variants() -> tuple[str, ...]:
    """The wheel's voice variants, sorted, without :data:`EXCLUDED_VARIANTS`."""
    folder = espeak_paths()[1] / "voices" / "!v"
    names = sorted(p.name for p in folder.iterdir() if p.is_file())
    return tuple(n for n in names if n not in EXCLUDED_VARIANTS)


def plan_speakers(tier: SyntheticTier, seed: int) -> dict[str, list[str]]:
    """Voice+variant names of the training speakers and the held-out speakers."""
    rng = random.Random(f"speakers-{seed}")
    all_variants = available_variants()
    missing = [v for v in tier.train_variants + tier.held_out_variants if v not in all_variants]
    if missing:
        raise ValueError(f"tier {tier.name!r}: variants {missing} are not in this espeakng-loader; "
                         f"allowed: {', '.join(all_variants)}")
    train_variants = tier.train_variants or tuple(v for v in all_variants if v not in tier.held_out_variants)
    train = [f"{v}+{x}" for v in tier.voices for x in train_variants]
    if len(train) > tier.max_train_speakers:
        train = sorted(rng.sample(train, tier.max_train_speakers))
    held = [f"{v}+{x}" for v in tier.voices for x in tier.held_out_variants]
    held += [f"{v}+{x}" for v in tier.held_out_voices for x in (tier.held_out_variants or train_variants)]
    held = [s for s in held if s not in train]
    if len(held) > tier.max_held_out_speakers:
        held = sorted(rng.sample(held, tier.max_held_out_speakers))
    return {"train": train, "held_out": held}


def _estimated_seconds(text: str, rate: int) -> float:
    """Planned duration: eSpeak counts a "word" as 5 letters; fitted on the easy
    tier (0.14 s RMS error); corpus.json records the measured hours."""
    letters = len(text.replace(" ", ""))
    return 0.835 * letters / 5 * 60.0 / rate + 0.53


def plan_corpus(tier: SyntheticTier, seed: int) -> tuple[dict[str, list[Utterance]], dict[str, str]]:
    """Utterances of every split (disjoint sentences) and the speaker table (id -> voice)."""
    speakers = plan_speakers(tier, seed)
    numbers = {name: str(100 + i) for i, name in enumerate(speakers["train"] + speakers["held_out"])}
    gen = SentenceGenerator(Lexicon.at_level(tier.vocab_level), tier.min_words, tier.max_words, seed)
    rng = random.Random(f"utterances-{seed}")
    used: set[str] = set()
    plan: dict[str, list[Utterance]] = {}
    for split in SPLITS:
        pool = speakers["held_out"] if split == "test_held_out" else speakers["train"]
        target = 3600.0 * (tier.train_hours if split == "train" else tier.eval_hours)
        utts: list[Utterance] = []
        counters: dict[str, int] = {}
        total = 0.0
        while total < target:
            text = gen.next_unique(used)
            voice = pool[len(utts) % len(pool)] if len(utts) < len(pool) else rng.choice(pool)
            spk = numbers[voice]
            n = counters.get(spk, 0)
            counters[spk] = n + 1
            rate = rng.randint(*tier.rate_wpm)
            utts.append(Utterance(
                id=f"{spk}-{_CHAPTER[split]}-{n:04d}", split=split, speaker=spk, voice=voice,
                text=text, rate=rate, pitch=rng.randint(*tier.pitch),
                seed=rng.randrange(2**31)))
            total += _estimated_seconds(text, rate)
        plan[split] = utts
    return plan, {num: name for name, num in numbers.items()}


def audio_path(root: Path, part: str, utt: Utterance) -> Path:
    return root / part / utt.speaker / utt.chapter / f"{utt.id}.flac"


def _synthesize_shard(jobs: Sequence[tuple[Utterance, str]]) -> list[int]:
    """Worker: synthesize one shard with a fresh engine; returns samples per utterance."""
    import soundfile as sf
    import torch

    torch.set_num_threads(1)
    from .espeak_engine import EspeakEngine

    if all(Path(p).is_file() for _, p in jobs):  # done by an earlier, interrupted run
        return [sf.info(p).frames for _, p in jobs]
    lengths = []
    with EspeakEngine() as engine:
        for utt, path in jobs:
            audio = engine.synth_16k(utt.text, utt.voice, rate=utt.rate, pitch=utt.pitch, seed=utt.seed)
            if audio.size == 0:
                raise RuntimeError(f"eSpeak produced no audio for {utt.id} ({utt.voice}): {utt.text!r}")
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(path) as tmp:
                sf.write(str(tmp), audio, TARGET_SAMPLE_RATE, format="FLAC", subtype="PCM_16")
            lengths.append(int(audio.size))
    return lengths


def _shards(items: list, size: int) -> list[list]:
    return [items[i:i + size] for i in range(0, len(items), size)]


def synthesize(plan: dict[str, list[Utterance]], root: Path, part_names: dict[str, str],
               num_jobs: int = 1, progress: Callable[[int], None] | None = None) -> dict[str, int]:
    """Write every utterance's FLAC under ``root``; returns samples per utterance id."""
    clean_stale_tmp(Path(root), recursive=True)  # FLACs a killed run was writing
    jobs = [(u, str(audio_path(root, part_names[split], u))) for split in SPLITS for u in plan[split]]
    shards = _shards(jobs, SHARD_SIZE)
    lengths: dict[str, int] = {}

    def collect(shard, result) -> None:
        for (utt, _), n in zip(shard, result):
            lengths[utt.id] = n
        if progress:
            progress(len(shard))

    for shard, result in map_in_processes(_synthesize_shard, shards, num_jobs):
        collect(shard, result)
    return lengths


def write_transcripts(plan: dict[str, list[Utterance]], root: Path, part_names: dict[str, str]) -> None:
    """LibriSpeech ``spk-chap.trans.txt`` files beside the audio."""
    for split, utts in plan.items():
        chapters: dict[tuple[str, str], list[Utterance]] = {}
        for u in utts:
            chapters.setdefault((u.speaker, u.chapter), []).append(u)
        for (spk, chap), group in chapters.items():
            path = root / part_names[split] / spk / chap / f"{spk}-{chap}.trans.txt"
            with atomic_path(path) as tmp:
                tmp.write_text("".join(f"{u.id} {u.text}\n" for u in sorted(group, key=lambda u: u.id)))


def build_manifests(utts: Iterable[Utterance], root: Path, part: str, lengths: dict[str, int]):
    """(RecordingSet, SupervisionSet) of one split."""
    from lhotse import AudioSource, Recording, RecordingSet, SupervisionSegment, SupervisionSet

    recordings, supervisions = [], []
    for u in utts:
        n = lengths[u.id]
        duration = n / TARGET_SAMPLE_RATE
        recordings.append(Recording(
            id=u.id, sources=[AudioSource(type="file", channels=[0], source=str(audio_path(root, part, u)))],
            sampling_rate=TARGET_SAMPLE_RATE, num_samples=n, duration=duration))
        supervisions.append(SupervisionSegment(
            id=u.id, recording_id=u.id, start=0.0, duration=duration, channel=0, text=u.text,
            language="English", speaker=u.speaker,
            custom={"voice": u.voice, "rate_wpm": u.rate, "pitch": u.pitch}))
    return RecordingSet.from_recordings(recordings), SupervisionSet.from_segments(supervisions)


def corpus_summary(tier: SyntheticTier, seed: int, plan: dict[str, list[Utterance]],
                   speakers: dict[str, str], lengths: dict[str, int]) -> dict:
    """What corpus.json records: the tier's parameters and each split's measured size."""
    splits = {}
    for split, utts in plan.items():
        words = [w for u in utts for w in u.text.split()]
        splits[split] = {
            "utterances": len(utts),
            "hours": round(sum(lengths[u.id] for u in utts) / TARGET_SAMPLE_RATE / 3600, 4),
            "speakers": sorted({u.speaker for u in utts}),
            "words": len(words),
            "vocabulary": len(set(words)),
        }
    return {"corpus": "synthetic", "seed": seed, "tier": asdict(tier), "splits": splits,
            "speakers": speakers, "sample_rate": TARGET_SAMPLE_RATE,
            "synthesizer": "eSpeak NG (espeakng-loader), 22050 Hz resampled to 16 kHz"}


def write_librispeech_layout(out_dir: str | os.PathLike, tier: SyntheticTier, seed: int = 0,
                             num_jobs: int = 1) -> dict[str, list[Utterance]]:
    """Write the synthetic corpus as a LibriSpeech copy (train-clean-100, dev-clean,
    test-clean, test-other); returns the plan (what the transcripts say)."""
    root = Path(out_dir)
    plan, _ = plan_corpus(tier, seed)
    synthesize(plan, root, LIBRISPEECH_PARTS, num_jobs)
    write_transcripts(plan, root, LIBRISPEECH_PARTS)
    return plan
