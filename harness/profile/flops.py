"""Encoder FLOPs for one 30 s input, as the paper counts them.

DeepSpeed's flops profiler (``deepspeed.profiling.flops_profiler``) counts the
torch functions it patches (linear, conv, matmul, softmax, layer_norm,
``torch.add``/``torch.mul`` ...). Element-wise work written with operators in
our own modules counts zero, so the authors added fixed per-element costs for
some of their modules (BiasNorm, Swoosh, Bypass). Those rules live in one
table, :data:`variants.components.flop_rules.EXTRA_FLOPS_PER_ELEMENT`; here they
are applied *through* DeepSpeed's profiler: a forward hook on each module of a
listed type adds ``rule x elements of its first input`` to the module's
``__flops__`` accumulator, which the profiler sums like any other count.

Two forward passes yield three figures:

- ``deepspeed``: plain DeepSpeed (convention ``"deepspeed"``);
- ``total``: plus the authors' rules (convention ``"deepspeed+authors_rules"``);
- ``flop_counter``: :class:`torch.utils.flop_counter.FlopCounterMode`, which
  counts only matmul/conv/attention kernels, as a cross-check: it must not
  exceed DeepSpeed's count, or DeepSpeed missed matrix work.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Mapping

import torch
from torch import nn

#: the paper's input: 30 s of 80-dim fbank at 100 Hz, batch 1
PAPER_FRAMES = 3000
PAPER_FEATURES = 80

PLAIN = "deepspeed"
WITH_RULES = "deepspeed+authors_rules"


class _BelowError(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.ERROR


def _flops_profiler():
    """Import DeepSpeed's profiler module without its start-up chatter.

    DeepSpeed's logger writes to stdout (it would corrupt ``--json`` output); a
    filter installed on the logger before the import keeps only errors.
    """
    logging.getLogger("DeepSpeed").addFilter(_BelowError())
    from deepspeed.profiling.flops_profiler import profiler

    return profiler


def authors_rules() -> dict[type, int]:
    """The one table of extra per-element FLOPs (owned by the components)."""
    from variants.components.flop_rules import EXTRA_FLOPS_PER_ELEMENT

    return dict(EXTRA_FLOPS_PER_ELEMENT)


@dataclass(frozen=True)
class EncoderFlops:
    """FLOPs of encoder_embed + encoder for one input."""

    deepspeed: int                      # plain DeepSpeed count
    extra: int                          # added by the authors' rules
    flop_counter: int                   # torch FlopCounterMode (matmul/conv only)
    frames: int
    features: int
    by_part: dict[str, int] = field(default_factory=dict)   # with rules
    extra_by_type: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        """DeepSpeed plus the authors' rules."""
        return self.deepspeed + self.extra

    @property
    def convention(self) -> str:
        """Convention of :attr:`total`."""
        return WITH_RULES if self.extra else PLAIN

    def gflops(self, convention: str = WITH_RULES) -> float:
        if convention == PLAIN:
            return self.deepspeed / 1e9
        if convention == WITH_RULES:
            return self.total / 1e9
        if convention == "flop_counter":
            return self.flop_counter / 1e9
        raise ValueError(f"unknown FLOPs convention {convention!r}; allowed: "
                         f"{PLAIN}, {WITH_RULES}, flop_counter")

    @property
    def flop_counter_exceeds(self) -> bool:
        """True if torch counted more matrix work than DeepSpeed counted in all."""
        return self.flop_counter > self.deepspeed * 1.001


def _rule_for(module: nn.Module, rules: Mapping[type, int]) -> int | None:
    for cls in type(module).__mro__:
        if cls in rules:
            return int(rules[cls])
    return None


def _first_tensor(args: tuple, kwargs: dict) -> torch.Tensor | None:
    for a in list(args) + list(kwargs.values()):
        if isinstance(a, torch.Tensor):
            return a
    return None


def _add_rule_hooks(model: nn.Module, rules: Mapping[type, int], tally: dict[str, int]) -> list:
    """Forward hooks adding each rule's FLOPs to the module's ``__flops__``."""
    handles = []
    for module in model.modules():
        per_element = _rule_for(module, rules)
        if per_element is None:
            continue

        def hook(mod: nn.Module, args: tuple, kwargs: dict, output: Any, _k: int = per_element) -> None:
            x = _first_tensor(args, kwargs)
            if x is None:
                raise RuntimeError(f"{type(mod).__name__} has a FLOPs rule but was called "
                                   "without a tensor input")
            extra = _k * x.numel()
            mod.__flops__ += extra
            name = type(mod).__name__
            tally[name] = tally.get(name, 0) + extra

        handles.append(module.register_forward_hook(hook, with_kwargs=True))
    return handles


def profile_flops(model: nn.Module, args: tuple, kwargs: Mapping[str, Any] | None = None,
                  rules: Mapping[type, int] | None = None,
                  parts: tuple[str, ...] = ()) -> tuple[int, int, int, dict[str, int], dict[str, int]]:
    """Run ``model(*args, **kwargs)`` under DeepSpeed's profiler, then under FlopCounterMode.

    Returns (plain DeepSpeed FLOPs, extra FLOPs from ``rules``, FlopCounterMode
    FLOPs, FLOPs with rules of each named child in ``parts``, extra FLOPs per
    module type). ``rules=None`` applies the authors' table; ``{}`` applies none.
    """
    from torch.utils.flop_counter import FlopCounterMode

    profiler_mod = _flops_profiler()
    rules = authors_rules() if rules is None else dict(rules)
    tally: dict[str, int] = {}
    prof = profiler_mod.FlopsProfiler(model)
    was_training = model.training
    model.eval()
    handles: list = []
    try:
        prof.start_profile()
        handles = _add_rule_hooks(model, rules, tally)
        with torch.inference_mode():
            model(*args, **dict(kwargs or {}))
        total = int(prof.get_total_flops())
        by_part = {p: int(profiler_mod.get_module_flops(getattr(model, p))) for p in parts}
    finally:
        for h in handles:
            h.remove()
        prof.end_profile()
    # A second pass: under a dispatch mode torch.matmul decomposes into calls of
    # the Python-level Tensor.bmm, which DeepSpeed also patches, so running both
    # counters in one pass would count every matmul twice.
    try:
        counter = FlopCounterMode(display=False)
        with torch.inference_mode(), counter:
            model(*args, **dict(kwargs or {}))
        flop_counter = int(counter.get_total_flops())
    finally:
        model.train(was_training)
    extra = sum(tally.values())
    return total - extra, extra, flop_counter, by_part, tally


def measure_encoder_flops(model: nn.Module, frames: int = PAPER_FRAMES, features: int | None = None,
                          rules: Mapping[type, int] | None = None, batch: int = 1) -> EncoderFlops:
    """FLOPs of an :class:`~variants.model.AsrModel`'s encoder_embed + encoder.

    The input is ``batch`` x ``frames`` x ``features`` ones with full lengths,
    as in the authors' profiling script (FLOPs do not depend on the values).
    """
    if frames <= 0 or batch <= 0:
        raise ValueError(f"frames and batch must be positive, got frames={frames}, batch={batch}")
    if features is None:
        features = int(model.spec.encoder.num_features)
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    if device.type == "meta":
        raise ValueError("cannot count FLOPs of a model on the meta device; build it on cpu or cuda")
    x = torch.ones(batch, frames, features, device=device)
    x_lens = torch.full((batch,), frames, dtype=torch.int64, device=device)
    plain, extra, fc, by_part, tally = profile_flops(
        model, (x, x_lens), rules=rules, parts=("encoder_embed", "encoder"))
    return EncoderFlops(deepspeed=plain, extra=extra, flop_counter=fc, frames=frames,
                        features=features, by_part=by_part, extra_by_type=tally)
