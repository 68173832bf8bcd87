"""Corpus tiers of the synthetic corpus: voices, speaking rates, sentence length, size.

A speaker is a (voice, variant) pair of eSpeak NG. Every tier holds out
speakers for ``test_held_out``: variants never used in training and, from the
``standard`` tier up, whole voices (accents) never used in training.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

#: the wheel's eight usable English voices (en-Shaw is the Shavian script), in
#: the order ``--voices N`` takes them
ENGLISH_VOICES = ("en-us", "en", "en-gb-x-rp", "en-029", "en-gb-x-gbclan",
                  "en-gb-x-gbcwmd", "en-gb-scotland", "en-us-nyc")
#: variants that sound like a plain human voice (the rest include whisper,
#: croak, robots and deliberately odd voices)
PLAIN_VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8", "f1", "f2", "f3", "f4", "f5",
                  "Andy", "Annie", "adam", "anika", "belinda", "benjamin", "david", "ed",
                  "edward", "john", "linda", "max", "michel", "paul", "robert", "steph",
                  "travis", "victor", "zac")
#: variants left out of every tier: not speech-like enough to transcribe
EXCLUDED_VARIANTS = ("whisper", "whisperf", "croak", "Demonic", "UniRobot", "anikaRobot",
                     "robosoft", "robosoft2", "robosoft3", "robosoft4", "robosoft5",
                     "robosoft6", "robosoft7", "robosoft8", "Tweaky", "Storm")

SPLITS = ("train", "dev", "test", "test_held_out")


@dataclass(frozen=True)
class SyntheticTier:
    """Everything that defines a synthetic corpus, apart from the seed."""

    name: str
    train_hours: float
    eval_hours: float                      # each of dev, test, test_held_out
    voices: tuple[str, ...]                # voices of the training speakers
    train_variants: tuple[str, ...]
    held_out_variants: tuple[str, ...]     # variants only test_held_out uses
    held_out_voices: tuple[str, ...]       # voices only test_held_out uses
    rate_wpm: tuple[int, int]
    pitch: tuple[int, int]
    min_words: int
    max_words: int
    vocab_level: float
    max_train_speakers: int = 64
    max_held_out_speakers: int = 16

    def __post_init__(self) -> None:
        if self.train_hours <= 0 or self.eval_hours <= 0:
            raise ValueError(f"tier {self.name!r}: train_hours and eval_hours must be > 0")
        unknown = [v for v in self.voices + self.held_out_voices if v not in ENGLISH_VOICES]
        if unknown:
            raise ValueError(f"tier {self.name!r}: unknown voices {unknown}; "
                             f"allowed: {', '.join(ENGLISH_VOICES)}")
        if not self.voices:
            raise ValueError(f"tier {self.name!r} has no training voices")
        if set(self.voices) & set(self.held_out_voices):
            raise ValueError(f"tier {self.name!r}: a held-out voice is also a training voice")
        if set(self.train_variants) & set(self.held_out_variants):
            raise ValueError(f"tier {self.name!r}: a held-out variant is also a training variant")
        if not self.held_out_variants and not self.held_out_voices:
            raise ValueError(f"tier {self.name!r} has no held-out speakers")
        lo, hi = self.rate_wpm
        if not 80 <= lo <= hi <= 450:
            raise ValueError(f"tier {self.name!r}: rate_wpm {self.rate_wpm} must lie in 80-450")
        lo, hi = self.pitch
        if not 0 <= lo <= hi <= 100:
            raise ValueError(f"tier {self.name!r}: pitch {self.pitch} must lie in 0-100")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


TIERS: dict[str, SyntheticTier] = {
    # a few seconds of audio per split: for unit tests
    "tiny": SyntheticTier(
        "tiny", train_hours=40 / 3600, eval_hours=10 / 3600, voices=("en-us",),
        train_variants=("m3", "f3"), held_out_variants=("m1",), held_out_voices=(),
        rate_wpm=(165, 175), pitch=(45, 55), min_words=3, max_words=5, vocab_level=0.3),
    # the default and the demo's corpus: two accents, eight training speakers,
    # a narrow rate range, short sentences, ~130 words
    "easy": SyntheticTier(
        "easy", train_hours=1.0, eval_hours=0.08, voices=("en-us", "en"),
        train_variants=("m1", "m3", "f1", "f3"), held_out_variants=("m2", "f2"),
        held_out_voices=(), rate_wpm=(155, 180), pitch=(40, 60),
        min_words=3, max_words=7, vocab_level=0.35),
    # close to the corpus the first demo measurements used: more voices, wider
    # rates, longer sentences, the whole grammar, held-out accents
    "standard": SyntheticTier(
        "standard", train_hours=1.5, eval_hours=0.15,
        voices=("en-us", "en", "en-gb-x-rp", "en-029", "en-gb-x-gbclan", "en-gb-x-gbcwmd"),
        train_variants=PLAIN_VARIANTS[:20], held_out_variants=PLAIN_VARIANTS[20:],
        held_out_voices=("en-gb-scotland", "en-us-nyc"), rate_wpm=(130, 200), pitch=(30, 70),
        min_words=4, max_words=12, vocab_level=1.0),
    # every voice and every speech-like variant, wide rates
    "hard": SyntheticTier(
        "hard", train_hours=5.0, eval_hours=0.25,
        voices=ENGLISH_VOICES[:6], train_variants=(), held_out_variants=(),
        held_out_voices=ENGLISH_VOICES[6:], rate_wpm=(110, 230), pitch=(20, 80),
        min_words=3, max_words=14, vocab_level=1.0, max_train_speakers=200,
        max_held_out_speakers=30),
}
DEFAULT_TIER = "easy"


def get_tier(name: str = DEFAULT_TIER, hours: float | None = None,
             voices: int | None = None) -> SyntheticTier:
    """The named tier, with ``hours`` (training hours) and ``voices`` (number of
    training voices, the first N of :data:`ENGLISH_VOICES`) overridden if given."""
    if name not in TIERS:
        raise ValueError(f"unknown synthetic tier {name!r}; allowed: {', '.join(TIERS)}")
    tier = TIERS[name]
    if hours is not None:
        if hours <= 0:
            raise ValueError(f"hours={hours} must be > 0")
        tier = replace(tier, train_hours=float(hours))
    if voices is not None:
        if not 1 <= voices <= len(ENGLISH_VOICES) - 1:
            raise ValueError(f"voices={voices} must be 1-{len(ENGLISH_VOICES) - 1} "
                             "(at least one voice stays for held-out speakers or a held-out variant)")
        chosen = ENGLISH_VOICES[:voices]
        held = tuple(v for v in tier.held_out_voices if v not in chosen)
        if not held and not tier.held_out_variants:
            held = ENGLISH_VOICES[voices:voices + 1]
        tier = replace(tier, voices=chosen, held_out_voices=held)
    return tier
