"""The grid's ``data:`` section: a validated description of what to prepare.

    data:
      corpus: synthetic        # synthetic | librispeech | aishell
      out: data/synthetic-easy
      tier: easy               # synthetic only: tiny | easy | standard | hard
      seed: 0

``DataConfig(**section).prepare()`` runs :func:`harness.data.prepare_corpus`
(incremental: an already prepared folder is simply loaded).
"""
from __future__ import annotations

from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, model_validator

from .bpe import DEFAULT_VOCAB_SIZE


class DataConfig(BaseModel):
    """Options of ``harness data prepare``, as a grid file spells them."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    corpus: Literal["synthetic", "librispeech", "aishell"] = "synthetic"
    out: str
    src: Optional[str] = None
    tier: Optional[Literal["tiny", "easy", "standard", "hard"]] = None
    hours: Optional[float] = Field(None, gt=0)
    voices: Optional[int] = Field(None, ge=1, le=7)
    seed: int = 0
    num_jobs: Optional[int] = Field(None, ge=1)
    vocab_size: int = Field(DEFAULT_VOCAB_SIZE, gt=3)
    speed_perturb: bool = True
    train_set: Literal["auto", "100", "960"] = "auto"
    oov_chars: Literal["report", "reject"] = "report"    # librispeech only
    allow_dropped: bool = False

    @model_validator(mode="after")
    def _fits_corpus(self) -> "DataConfig":
        synthetic_only = [k for k in ("tier", "hours", "voices") if getattr(self, k) is not None]
        if self.corpus == "synthetic" and self.src is not None:
            raise ValueError("data.src: the synthetic corpus is generated and takes no src")
        if self.corpus != "synthetic":
            if self.src is None:
                raise ValueError(f"data.src is required for corpus {self.corpus!r} (its local copy)")
            if synthetic_only:
                raise ValueError(f"data.{', data.'.join(synthetic_only)} apply to corpus 'synthetic' only")
        if self.corpus != "librispeech" and self.oov_chars != "report":
            raise ValueError("data.oov_chars applies to corpus 'librispeech' only")
        return self

    def prepare(self, progress: bool = True):
        """Prepare (or load, when done) the corpus; returns a PreparedCorpus."""
        from .prepare import prepare_corpus

        options = self.model_dump(exclude={"corpus", "out", "src"})
        if self.corpus != "synthetic":
            for key in ("tier", "hours", "voices", "seed"):
                options.pop(key)
        if self.corpus != "librispeech":
            options.pop("train_set")
            options.pop("oov_chars")
        return prepare_corpus(self.corpus, self.out, self.src, progress=progress, **options)
