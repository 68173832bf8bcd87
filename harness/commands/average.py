"""``harness average``: one checkpoint file averaged over a cell's last epochs.

    harness average runs/<grid>/<cell id> --epoch 30 --avg 9 --out exp/averaged.pt

The weights are those ``harness decode --epoch E --avg N`` decodes (the running
average between the two epochs with ``--use-averaged-model``, the cell's default;
else the last N epoch checkpoints averaged plainly), written with the cell's
config as a checkpoint that ``decode --checkpoint``, ``transcribe``, ``export``
and ``export-icefall`` read (icefall's ``export.py``, ESPnet's ``average_nbest``).
"""
from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    from .model_source import add_choice_arguments

    p.add_argument("source", metavar="CELL", help="a cell's run directory (runs/<grid>/<cell id>)")
    add_choice_arguments(p)
    p.add_argument("--out", required=True, help="checkpoint file to write, e.g. exp/averaged.pt")


def run(args: argparse.Namespace) -> int:
    import torch

    from harness.evaluate.checkpoint import atomic_save

    from .common import file_error
    from .model_source import Choice, SourceError, read_source

    if not Path(args.source).is_dir():
        raise file_error(args.source, "not a cell's run directory (runs/<grid>/<cell id>); averaging "
                                      "needs its epoch checkpoints")
    try:
        src = read_source(args.source, Choice.from_args(args))
    except SourceError as e:
        raise file_error(args.source, e)
    out = Path(args.out)
    atomic_save({"model": src.weights, "config": src.config, "epoch": src.epoch, "step": src.step,
                 "averaged": src.note}, out)
    n = sum(v.numel() for v in src.weights.values() if torch.is_floating_point(v))
    print(f"wrote {out}: {src.config.get('variant', '?')}, {n / 1e6:.2f} M parameters, weights of {src.note}")
    return 0
