"""``harness export-icefall``: a harness model -> the authors' (icefall) checkpoint layout.

Writes ``{"model": state_dict}`` under their parameter names (what their
``export.py`` writes as ``pretrained.pt``), loadable by their ``AsrModel`` with
``strict=True``, and prints the ``train.py`` flags that build their model.
"""
from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    from .model_source import add_choice_arguments

    p.add_argument("source", metavar="CELL_OR_CKPT",
                   help="a cell's run directory (last epoch, averaged as it decodes) or a harness checkpoint")
    add_choice_arguments(p)
    p.add_argument("--out", required=True, help="file to write, e.g. exp/pretrained.pt")


def run(args: argparse.Namespace) -> int:
    import torch

    from harness.evaluate.checkpoint import atomic_save
    from variants.interop.icefall import IcefallCheckpointError, export_icefall_state_dict, icefall_flags

    from .common import UserError, file_error, out_path_problem
    from .model_source import Choice, SourceError, load_model

    problem = out_path_problem(args.out, folder=False)
    if problem:
        raise UserError(problem)
    try:
        model = load_model(args.source, Choice.from_args(args))
        sd = export_icefall_state_dict(model)
    except (SourceError, IcefallCheckpointError) as e:
        raise file_error(args.source, e)
    atomic_save({"model": sd}, Path(args.out))
    n = sum(v.numel() for v in sd.values() if torch.is_floating_point(v))
    print(f"wrote {args.out}: {len(sd)} tensors, {n / 1e6:.2f} M parameters, the authors' names")
    print("their model: train.py/pretrained.py flags " + " ".join(icefall_flags(model)))
    return 0
