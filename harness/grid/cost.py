"""What a cell costs before it is trained: params, encoder GFLOPs, GPU-hours.

GPU-hours = 3 x encoder FLOPs per audio second (forward + backward ~ 3 x
forward) x training audio seconds per epoch x epochs / sustained FLOP/s. The
sustained rate is calibrated on the paper's Table 7: Zipformer-M (62.9 GFLOPs
per 30 s) trains one epoch of LibriSpeech 960 h x 3 speed perturbation in 69
min on 4 V100s, i.e. about 3.9 effective TFLOP/s per V100 once the heads,
padding and data loading are paid for.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Optional

from harness.config import Cell

#: training audio hours per epoch of the corpora the harness knows (speed perturbation x3)
#: effective FLOP/s per GPU, from Table 7 (see the module docstring)
CALIBRATED_FLOPS_PER_GPU = 3 * 62.9e9 / 30 * 2880 * 3600 / (69 * 60 * 4)
ASSUMPTION = ("GPU-hours = 3 x encoder FLOPs per audio second x training hours x epochs / "
              f"{CALIBRATED_FLOPS_PER_GPU / 1e12:.1f} TFLOP/s per GPU (calibrated on the paper's "
              "Table 7: Zipformer-M, 69 min/epoch on 4 V100, 960 h x 3 speed perturbation)")


def params_of(cell: Cell, vocab_size: Optional[int] = None) -> tuple[Optional[int], str]:
    """Total params, built on the meta device (no memory); (None, why) if it cannot be built."""
    import torch

    from variants import apply_overrides, model_from_spec

    def build():
        spec = apply_overrides(cell.spec, {"heads.vocab_size": vocab_size}) if vocab_size else cell.spec
        return model_from_spec(spec, cell.config.objective)

    try:
        with torch.device("meta"):
            model = build()
    except Exception:  # some init code cannot run on meta: build for real
        try:
            model = build()
        except Exception as e:  # model code not available / broken: say why
            return None, f"model cannot be built: {type(e).__name__}: {e}"
    return int(model.param_counts()["total"]), ""


_TRAIN_ONLY = {"balancer", "whitener", "dropout"}
_GFLOPS_CACHE: dict[str, tuple[Optional[float], str]] = {}


def gflops_of(cell: Cell, store: Any = None, measure: bool = True) -> tuple[Optional[float], str]:
    """Encoder GFLOPs for one 30 s input and where the figure comes from.

    The results store's ``profile`` table first (``harness profile`` wrote it), then a
    measurement with ``harness.profile.flops`` (DeepSpeed plus the authors' rules;
    the encoder does not depend on the objective), else the paper's figure.
    """
    # FLOPs are counted in eval mode, where the training-only parts do nothing
    enc = {k: v for k, v in cell.spec.encoder.model_dump().items() if k not in _TRAIN_ONLY}
    key = json.dumps(enc, sort_keys=True, default=str)
    if key in _GFLOPS_CACHE:
        return _GFLOPS_CACHE[key]
    out: tuple[Optional[float], str] = (None, "")
    if store is not None and not cell.config.overrides:
        for row in store.rows("profile", variant=cell.config.variant):
            if row.get("gflops") is not None:
                out = (float(row["gflops"]), f"measured ({row.get('gflops_convention')}, results store)")
                break
    if out[0] is None and measure:
        try:
            from harness.profile.flops import measure_encoder_flops

            from variants import model_from_spec

            model = model_from_spec(cell.spec, "ctc")
            out = (measure_encoder_flops(model).gflops(), "measured (DeepSpeed + the authors' rules)")
        except Exception as e:  # profiler missing or failing: say why, fall back to the paper
            out = (None, f"FLOPs not measured: {type(e).__name__}: {e}")
    if out[0] is None:
        spec = cell.spec
        encoder_as_published = all(k.startswith("heads.") for k in cell.config.overrides)
        if spec.paper_gflops is not None and encoder_as_published:
            out = (float(spec.paper_gflops), "paper figure (not measured)")
        elif not out[1]:
            out = (None, "n/a: FLOPs not measured (--no-flops) and the paper has no figure")
    _GFLOPS_CACHE[key] = out
    return out


def train_hours(cell: Cell) -> tuple[Optional[float], str]:
    """Training audio hours per epoch: from the prepared corpus if present, else known sizes."""
    d = cell.config.data
    try:
        from harness.data import PreparedCorpus  # type: ignore[attr-defined]

        if Path(d.dir).is_dir():
            from lhotse import load_manifest_lazy

            prepared = PreparedCorpus.load(d.dir)
            cuts = load_manifest_lazy(prepared.splits[prepared.train_split])
            secs = sum(c.duration for c in cuts)
            return secs / 3600, f"prepared corpus in {d.dir}"
    except Exception:
        pass
    from harness.data.corpora import get_recipe

    try:
        known = get_recipe(d.corpus).train_hours(d.options)
    except Exception:
        known = None
    if known is not None:
        return known
    return None, f"n/a: {d.corpus} is not prepared in {d.dir}"


def gpu_hours(gflops: Optional[float], hours: Optional[float], epochs: Optional[float]) -> Optional[float]:
    if gflops is None or hours is None or epochs is None:
        return None
    flops = 3 * gflops * 1e9 / 30 * hours * 3600 * epochs
    return flops / CALIBRATED_FLOPS_PER_GPU / 3600


def fmt(x: Optional[float], spec: str) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)


def memory_fit(cell: Cell, store: Any, gpu_gib: float) -> tuple[Optional[float], str]:
    """Estimated peak GPU memory (GiB) of one training step at the cell's ``max_duration``,
    and a verdict against ``gpu_gib``, from ``harness bench --train --device cuda`` rows.

    The rows of the cell's variant measured on a GPU under the cell's precision (bf16 for
    ``auto``) give peak memory against audio seconds per batch; among them only those with
    the longest utterances count (attention memory grows with the square of an utterance's
    length, so shorter ones would underestimate). Two or more batch sizes: a least-squares
    line (fixed cost + cost per second of audio); one: proportional scaling, which
    overestimates when extrapolating upwards. ``(None, why)`` without a usable row.
    """
    t = cell.config.train
    precision = "bf16" if t.precision == "auto" else t.precision
    how_to = (f"run `harness bench {cell.config.variant} --train --device cuda --precision {precision}` "
              f"on that GPU to measure it")
    if cell.config.overrides:
        return None, "the cell overrides its variant's spec, which the measurements are not of: " + how_to
    rows = [] if store is None else [
        r for r in store.rows("train_bench", variant=cell.config.variant, device_type="cuda",
                              precision=precision)
        if r.get("peak_mem_mb")]
    if not rows:
        return None, "no GPU training measurement: " + how_to
    longest = max(r["duration_s"] for r in rows)
    pts = sorted((r["batch"] * r["duration_s"], r["peak_mem_mb"] / 1024) for r in rows
                 if r["duration_s"] == longest)
    audio = cell.config.data.max_duration
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    if len(set(xs)) >= 2:
        mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
        slope = sum((x - mx) * (y - my) for x, y in pts) / sum((x - mx) ** 2 for x in xs)
        est = my + slope * (audio - mx)
        how = f"line through {len(pts)} measurements"
    else:
        est = ys[-1] * audio / xs[-1]
        how = f"scaled from one measurement of {xs[-1]:.0f} s"
    verdict = "fits" if est <= gpu_gib else "does not fit"
    return est, (f"{verdict} in {gpu_gib:g} GiB: {est:.1f} GiB estimated for {audio:g} s of audio per batch "
                 f"({how}, {longest:g} s utterances, {precision})")
