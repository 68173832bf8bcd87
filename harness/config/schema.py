"""The grid-file schema: what a file under ``experiments/`` may say.

A grid file has a ``base`` cell config, optional ``axes`` (cartesian
products) and optional ``ablations`` (named rows that change keys of the
base, like the rows of the paper's Table 5). Every model here forbids unknown
keys, so a typo is an error that names the key and lists what is allowed.
"""
from __future__ import annotations

from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from variants import list_variants
from variants.spec import OBJECTIVE_HEADS

from .corpora import Corpus

Precision = Literal["auto", "fp32", "bf16", "fp16"]
DeviceName = Literal["auto", "cpu", "cuda"]
HEAD_NAMES = ("transducer", "ctc", "attention")
#: decode.methods when a grid gives none: the method the paper or the authors report for the
#: objective -- transducer: beam search of size 4, at most one symbol per frame (paper sec. 4,
#: the authors' modified_beam_search); CTC: greedy ("ctc-decoding"); CTC/AED: attention-decoder
#: rescoring of the CTC n-best, no n-gram (icefall RESULTS.md). An explicit head list takes the
#: default of the first of these objectives whose heads it has.
DEFAULT_DECODE_METHODS: dict[str, list[str]] = {
    "transducer": ["modified_beam_search"],
    "ctc_aed": ["attention_rescoring"],
    "ctc": ["ctc_greedy_search"],
}


class StrictSection(BaseModel):
    """A section of a grid file: unknown keys are errors, defaults are validated."""

    model_config = ConfigDict(extra="forbid", validate_default=True)


class OptimizerSection(StrictSection):
    """Optimizer and learning-rate schedule (``variants.optim``)."""

    #: None: the optimizer the variant's spec names (ScaledAdam, or Adam for Conformers)
    name: Optional[Literal["scaled_adam", "adam"]] = None
    #: base learning rate (paper: 0.045 for ScaledAdam, 7.5 for Adam with Noam)
    lr: Optional[float] = Field(None, gt=0)
    #: keyword arguments of the optimizer (ScaledAdam / torch.optim.Adam), e.g. betas, lr_scales
    options: dict[str, Any] = Field(default_factory=dict)
    #: None: the schedule that goes with the optimizer (Eden / Noam)
    schedule: Optional[Literal["eden", "noam"]] = None
    #: keyword arguments of the schedule (Eden: lr_batches, lr_epochs, warmup_batches,
    #: warmup_start; Noam: d_model, warmup)
    schedule_options: dict[str, Any] = Field(default_factory=dict)
    #: seconds of audio per optimizer step (max duration x GPUs) the schedule's step
    #: constants were tuned for; the LR schedule's batch counter is scaled by
    #: real/this so fewer GPUs or smaller batches keep the schedule. None: no scaling.
    schedule_ref_duration: Optional[float] = Field(None, gt=0)


class DataSection(StrictSection):
    """Which corpus, where it is prepared, and how batches are formed."""

    #: synthetic (built in), librispeech, aishell, lhotse (manifests) or kaldi (data dirs)
    corpus: Corpus
    #: directory of the prepared corpus (manifests, BPE model); created if missing
    dir: str
    #: where the raw corpus lives: a local copy, lhotse manifests, Kaldi data dirs (not for synthetic)
    src_dir: Optional[str] = None
    #: the corpus's options (``harness.config.corpora``: e.g. the synthetic tier), checked by ``plan``
    options: dict[str, Any] = Field(default_factory=dict)
    #: seconds of audio per batch per GPU (paper Table 7: 1000-1700)
    max_duration: float = Field(gt=0)
    #: reference batch duration x world size for the model's schedules (authors: 600)
    ref_duration: float = Field(600.0, gt=0)
    #: SpecAugment on the training batches (paper: on)
    spec_augment: bool = True
    #: data-loader worker processes (0: in the training process)
    num_workers: int = Field(0, ge=0)
    #: names of test splits to decode (None: every test split the corpus has)
    test_sets: Optional[list[str]] = None
    #: use at most this many training utterances (None: all); for smoke tests
    max_train_cuts: Optional[int] = Field(None, gt=0)


class TrainSection(StrictSection):
    """Training budget and loop settings."""

    #: training epochs (paper: 50 on LibriSpeech)
    epochs: Optional[int] = Field(None, gt=0)
    #: stop after this many optimizer steps (the budget may be epochs, steps or both)
    max_steps: Optional[int] = Field(None, gt=0)
    #: batches whose gradients are summed per optimizer step
    accum_grad: int = Field(1, ge=1)
    #: auto: bf16 where the GPU has it, else fp16 with loss scaling on CUDA, fp32 on CPU
    precision: Precision = "auto"
    #: auto: CUDA if available, else CPU
    device: DeviceName = "auto"
    #: write checkpoint-<step>.pt every N steps (epoch-<e>.pt is written at each epoch end)
    save_every_n: int = Field(4000, gt=0)
    #: step checkpoints kept (the newest); epoch checkpoints are all kept (decode's --avg needs them)
    keep_last_k: int = Field(3, ge=1)
    #: checkpoints (the newest, step or epoch) that keep the optimizer state a resume needs;
    #: older ones keep the weights and running average only (about half the size)
    keep_optimizer_k: int = Field(2, ge=1)
    #: update the running average of the weights every N steps (authors: 200)
    average_period: int = Field(200, gt=0)
    #: log and record progress every N steps
    log_interval: int = Field(50, gt=0)
    #: try the largest batches once before training so an OOM comes at start
    oom_check: bool = True
    #: off the CPU fast paths (a GPU), recompute the feed-forward and convolution modules'
    #: hidden layers in the backward pass instead of keeping them (the same values; less
    #: training memory, more time: Zipformer-M forward + backward took 1.18x on the GPU's
    #: arithmetic run on CPU; variants.components.lean_autograd)
    recompute: bool = True
    #: per-cell wall-clock budget in minutes (None: unlimited); a safety net
    max_minutes: Optional[float] = Field(None, gt=0)
    #: compile the encoder's layers with torch.compile for training steps (dynamic shapes,
    #: per-step decisions drawn outside the graphs; harness.train.compile). Off by default:
    #: on one CPU core the demo's Zipformer took ~230 s of CPU to compile its first step and
    #: then ran at 0.95-1.1x eager's ~0.2 s a step, and inductor compiles again for each new
    #: batch length; ``harness bench --train --compile both`` measures what it buys on a machine
    compile: bool = False

    @model_validator(mode="after")
    def _budget(self) -> "TrainSection":
        if self.epochs is None and self.max_steps is None:
            raise ValueError("give a training budget: train.epochs, train.max_steps or both")
        if self.save_every_n < self.average_period:
            raise ValueError(f"save_every_n={self.save_every_n} must be >= average_period="
                             f"{self.average_period} (the averaged model is checkpointed)")
        return self


class DecodeSection(StrictSection):
    """Decoding after training (and optionally after every epoch)."""

    #: decoding methods (``harness.decoding.METHOD_HEADS``); None: the objective's default,
    #: DEFAULT_DECODE_METHODS
    methods: Optional[list[str]] = Field(None, min_length=1)
    beam: int = Field(4, gt=0)
    #: average the last ``avg`` epochs (authors' --avg); 1: the last epoch only
    avg: int = Field(1, ge=1)
    #: average with the running-average model (authors' --use-averaged-model)
    use_averaged_model: bool = True
    #: also decode after every epoch (Figure A.2's WER-vs-epoch curves)
    every_epoch: bool = False
    batch_duration: float = Field(200.0, gt=0)


class CellConfig(StrictSection):
    """Everything one cell of a grid needs; a grid's ``base`` is one of these."""

    #: a registered variant (``harness variants`` lists them)
    variant: str
    #: switches of ``variants.apply_overrides`` (e.g. ``norm``, ``heads.context_size``)
    overrides: dict[str, Any] = Field(default_factory=dict)
    #: a named objective or an explicit list of heads (transducer, ctc, attention)
    objective: Any = "transducer"
    optimizer: OptimizerSection = Field(default_factory=OptimizerSection)
    #: fields of ``harness.losses.LossConfig`` (loss scales, prune range ...)
    loss: dict[str, Any] = Field(default_factory=dict)
    data: DataSection
    train: TrainSection
    decode: DecodeSection = Field(default_factory=DecodeSection)
    #: seeds Python, NumPy and torch before the cell's model is built
    seed: int = 42

    @property
    def decode_methods(self) -> list[str]:
        """``decode.methods``, or the objective's default (DEFAULT_DECODE_METHODS) when unset."""
        if self.decode.methods is not None:
            return list(self.decode.methods)
        return default_decode_methods(self.objective)

    @field_validator("objective")
    @classmethod
    def _objective(cls, v: Any) -> Any:
        if isinstance(v, str) and v in OBJECTIVE_HEADS:
            return v
        if isinstance(v, list) and v and all(h in HEAD_NAMES for h in v):
            return list(v)
        raise ValueError(f"unknown objective {v!r}; allowed: {', '.join(OBJECTIVE_HEADS)} "
                         f"or a list of heads from {', '.join(HEAD_NAMES)}")

    @field_validator("variant")
    @classmethod
    def _variant(cls, v: str) -> str:
        names = list_variants()
        if v not in names:
            raise ValueError(f"unknown variant {v!r}; allowed: {', '.join(names)}")
        return v


def default_decode_methods(objective: str | list[str]) -> list[str]:
    """The decoding methods a cell with ``objective`` gets when its grid names none."""
    heads = set(OBJECTIVE_HEADS[objective] if isinstance(objective, str) else objective)
    for name, methods in DEFAULT_DECODE_METHODS.items():
        if set(OBJECTIVE_HEADS[name]) <= heads:
            return list(methods)
    return list(DEFAULT_DECODE_METHODS["ctc"])  # unreachable: every head list has one of them


class BaseSection(CellConfig):
    """The grid's base: a cell config plus the seeds every cell is run with."""

    seeds: Optional[list[int]] = Field(None, min_length=1)


class Row(StrictSection):
    """A named change relative to the base: an ablation row or an axis value."""

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.+-]+$")
    #: dotted key paths into the cell config (``variant``, ``optimizer.lr``,
    #: ``overrides.norm`` ...) and their new values
    set: dict[str, Any] = Field(default_factory=dict)
    description: str = ""


class GridFile(StrictSection):
    """A whole grid file."""

    name: Optional[str] = None
    description: str = ""
    #: which paper table/figure this grid regenerates (for the reporter)
    paper: Optional[str] = None
    base: BaseSection
    #: axis name -> values; scalars set the key path named by the axis,
    #: ``{name, set}`` rows set several keys at once
    axes: dict[str, list[Any]] = Field(default_factory=dict)
    ablations: list[Row] = Field(default_factory=list)
    #: whether the base itself is a row (it is, in Table 5)
    include_base: bool = True
    #: the row every other row is compared with (``harness compare``, the report's verdicts):
    #: ``base``, or an ablation's name; default: the base row, else (include_base false) the
    #: first ablation
    baseline: Optional[str] = None
    #: results store and run directories (defaults: runs/results.sqlite, runs/<grid name>)
    store: Optional[str] = None
    run_root: Optional[str] = None

    @model_validator(mode="after")
    def _rows(self) -> "GridFile":
        names = [r.name for r in self.ablations]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"ablation names must be unique; repeated: {', '.join(dup)}")
        if "base" in names and self.include_base:
            raise ValueError("an ablation may not be called 'base' while include_base is true")
        for axis, values in self.axes.items():
            if not values:
                raise ValueError(f"axis {axis!r} has no values")
        if not self.include_base and not self.ablations:
            raise ValueError("include_base is false and there are no ablations: the grid is empty")
        return self

    @field_validator("baseline")
    @classmethod
    def _baseline_is_a_row(cls, v: Optional[str], info: ValidationInfo) -> Optional[str]:
        if v is None or "ablations" not in info.data:
            return v
        rows = (["base"] if info.data.get("include_base", True) else []) + [
            r.name for r in info.data["ablations"]]
        if v not in rows:
            raise ValueError(f"{v!r} is not a row of this grid; allowed: {', '.join(rows)}")
        return v
