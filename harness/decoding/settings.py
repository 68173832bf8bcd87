"""What a decode is: the settings that are not part of a cell's training, and its key.

A cell's id hashes only what changes its trained weights; the settings here
(which checkpoint weights are averaged, the beam, the methods and test sets)
can change without retraining. Each result is stored under its decode key,
e.g. ``avg3-averaged-model-beam4``: the averaging, and the beam for the
methods that use one, so a decode sweep keeps every result beside the others.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Optional

from harness.config import CellConfig

from .decode import BEAM_METHODS, METHOD_HEADS


@dataclass(frozen=True)
class DecodeSettings:
    """One decode: methods, beam, averaging and test sets (None: every test split)."""

    methods: tuple[str, ...]
    beam: int = 4
    avg: int = 1
    use_averaged_model: bool = True
    test_sets: Optional[tuple[str, ...]] = None
    batch_duration: float = 200.0

    def __post_init__(self) -> None:
        unknown = [m for m in self.methods if m not in METHOD_HEADS]
        if unknown:
            raise ValueError(f"unknown decoding method(s) {', '.join(unknown)}; allowed: "
                             f"{', '.join(METHOD_HEADS)}")
        if self.beam < 1 or self.avg < 1:
            raise ValueError(f"beam and avg must be >= 1, got beam={self.beam}, avg={self.avg}")

    @classmethod
    def from_config(cls, config: CellConfig) -> "DecodeSettings":
        d = config.decode
        sets = config.data.test_sets
        return cls(methods=tuple(config.decode_methods), beam=d.beam, avg=d.avg,
                   use_averaged_model=d.use_averaged_model,
                   test_sets=tuple(sets) if sets is not None else None,
                   batch_duration=d.batch_duration)

    def with_(self, **changes) -> "DecodeSettings":
        """A copy with the fields given (None values keep the current one)."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})

    def averaging_key(self) -> str:
        return f"avg{self.avg}" + ("-averaged-model" if self.use_averaged_model else "")

    def key(self, method: str) -> str:
        """The decode key of ``method``'s results: averaging, and the beam where it matters."""
        return self.averaging_key() + (f"-beam{self.beam}" if method in BEAM_METHODS else "")
