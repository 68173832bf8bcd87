"""Loss settings (:class:`LossConfig`) with the authors' defaults (icefall zipformer/train.py)."""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

#: The authors' CTC / attention-decoder loss scales for each head combination:
#: the train.py flag defaults (CTC 0.2, AED 0.8) unless their published recipe
#: for that combination overrides them (CTC/AED recipes: 0.1 / 0.9).
AUTHORS_HEAD_SCALES: dict[frozenset[str], dict[str, float]] = {
    frozenset({"transducer"}): {},
    frozenset({"ctc"}): {"ctc": 0.2},
    frozenset({"transducer", "ctc"}): {"ctc": 0.2},
    frozenset({"ctc", "attention"}): {"ctc": 0.1, "attention": 0.9},
    frozenset({"transducer", "attention"}): {"attention": 0.8},
    frozenset({"transducer", "ctc", "attention"}): {"ctc": 0.2, "attention": 0.8},
}


class LossConfig(BaseModel):
    """Training-objective settings; unknown keys are rejected."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    prune_range: int = Field(5, ge=2, description="symbols kept per frame by the pruned RNN-T loss")
    lm_scale: float = Field(0.25, ge=0.0, le=1.0, description="LM-only smoothing of the simple loss")
    am_scale: float = Field(0.0, ge=0.0, le=1.0, description="AM-only smoothing of the simple loss")
    simple_loss_scale: float = Field(0.5, ge=0.0, description="weight of the simple loss after warm-up")
    warm_step: int = Field(2000, gt=0, description="batches over which the simple/pruned weights ramp")
    ctc_loss_scale: float | None = Field(None, ge=0.0, description="None: the authors' value for the heads")
    attention_decoder_loss_scale: float | None = Field(None, ge=0.0,
                                                       description="None: the authors' value for the heads")
    label_smoothing: float = Field(0.1, ge=0.0, lt=1.0, description="attention-decoder label smoothing")
    rnnt_backend: Literal["auto", "torch", "triton", "k2"] = Field(
        "auto", description="auto: k2 if it imports, else Triton kernels for CUDA tensors, else PyTorch")

    @model_validator(mode="after")
    def _smoothing_sums(self) -> "LossConfig":
        if self.lm_scale + self.am_scale > 1.0:
            raise ValueError(f"lm_scale + am_scale must be <= 1, got {self.lm_scale} + {self.am_scale}")
        return self

    def head_scales(self, heads: tuple[str, ...] | list[str]) -> dict[str, float]:
        """Weights of the CTC and attention-decoder losses for a model with ``heads``."""
        key = frozenset(heads)
        if key not in AUTHORS_HEAD_SCALES:
            raise ValueError(f"unsupported head combination {sorted(key)}; allowed: "
                             + "; ".join("+".join(sorted(k)) for k in AUTHORS_HEAD_SCALES))
        scales = dict(AUTHORS_HEAD_SCALES[key])
        if "ctc" in scales and self.ctc_loss_scale is not None:
            scales["ctc"] = self.ctc_loss_scale
        if "attention" in scales and self.attention_decoder_loss_scale is not None:
            scales["attention"] = self.attention_decoder_loss_scale
        return scales

    def transducer_scales(self, batch_count: float) -> tuple[float, float]:
        """(simple, pruned) loss weights: the simple weight falls from 1 to
        ``simple_loss_scale`` and the pruned weight rises from 0.1 to 1 over
        ``warm_step`` batches (the authors' warm-up)."""
        if batch_count >= self.warm_step:
            return self.simple_loss_scale, 1.0
        frac = max(batch_count, 0.0) / self.warm_step
        return 1.0 - frac * (1.0 - self.simple_loss_scale), 0.1 + 0.9 * frac
