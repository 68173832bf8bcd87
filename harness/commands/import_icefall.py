"""``harness import-icefall``: an authors' (icefall) checkpoint -> a harness checkpoint.

The output has the trainer's checkpoint layout (``model``, ``step``, ``epoch``,
``config`` with ``variant``/``objective``/``overrides`` ...), so anything that
reads the trainer's ``epoch-<e>.pt`` reads it: save it as
``<run dir>/checkpoints/epoch-<e>.pt`` to decode it like a trained cell.
"""
from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", help="the authors' epoch-N.pt / checkpoint-N.pt (train.py), "
                                      "pretrained.pt (export.py) or an averaged state dict")
    p.add_argument("--variant", help="our variant (default: the Zipformer preset the shapes match)")
    p.add_argument("--objective", help="transducer, ctc, ctc_aed or heads joined by commas, e.g. "
                                       "transducer,ctc (default: the heads the checkpoint has)")
    p.add_argument("--use-averaged-model", action="store_true",
                   help="take train.py's running average (model_avg) instead of model")
    p.add_argument("--out", required=True, help="harness checkpoint to write, e.g. runs/icefall/checkpoints/epoch-30.pt")


def parse_objective(text: str | None):
    if text is None or "," not in text:
        return text
    return tuple(h.strip() for h in text.split(",") if h.strip())


def imported_checkpoint(imp, model) -> dict:
    """The trainer's checkpoint layout for imported weights (no optimizer state, no running average)."""
    objective = imp.objective if isinstance(imp.objective, str) else list(imp.objective)
    overrides = {k: list(v) if isinstance(v, tuple) else v for k, v in imp.overrides.items()}
    overrides.setdefault("heads.vocab_size", model.vocab_size)
    overrides.setdefault("heads.blank_id", model.blank_id)
    return {
        "model": model.state_dict(), "model_avg": None, "optimizer": None, "scheduler": None,
        "scaler": None, "sampler": None,
        "step": imp.step, "batches": imp.step, "epoch": imp.epoch, "batch_in_epoch": 0,
        "epoch_done": True, "partial_epoch": False, "average_period": 1,
        "rng": None, "cuda_rng": None, "cell_id": None,
        "config": {"variant": imp.variant, "objective": objective, "overrides": overrides},
    }


def run(args: argparse.Namespace) -> int:
    from harness.evaluate.checkpoint import atomic_save
    from variants.interop.icefall import IcefallCheckpointError, check_keys, resolve_icefall_checkpoint
    from variants.interop.icefall_names import ours_to_icefall
    from variants.model import counted_numel

    from .common import UserError, file_error, out_path_problem

    problem = out_path_problem(args.out, folder=False)
    if problem:
        raise UserError(problem)
    try:
        imp = resolve_icefall_checkpoint(args.checkpoint, args.variant, parse_objective(args.objective),
                                         args.use_averaged_model)
        model = imp.build()
        check_keys(model, imp.state_dict, ours_to_icefall)
    except IcefallCheckpointError as e:
        raise file_error(args.checkpoint, e)
    model.load_state_dict(imp.state_dict, strict=True)
    state = imported_checkpoint(imp, model)
    atomic_save(state, Path(args.out))
    obj = imp.objective if isinstance(imp.objective, str) else ",".join(imp.objective)
    n = counted_numel(model)
    print(f"{args.checkpoint}: {imp.variant}, objective {obj}, {n / 1e6:.2f} M parameters, "
          f"step {imp.step}, epoch {imp.epoch}")
    for k, v in state["config"]["overrides"].items():
        print(f"  {k} = {v}")
    print(f"wrote {args.out}")
    return 0
