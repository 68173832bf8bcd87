"""`harness decode`: decode saved checkpoints again, never train.

    harness decode GRID [--cells ...] [--epoch E ...] [--avg N ...] [--use-averaged-model]
                        [--methods ...] [--beam K] [--test-sets ...]
    harness decode --checkpoint PATH [PATH ...] --variant NAME --data DIR [--out DIR] ...

With a grid, every chosen cell's epoch checkpoints are decoded for each
``--epoch`` x ``--avg`` given (a sweep in one call; defaults: the last epoch
and the cell's ``decode`` section); results go into the grid's store under
their decode key, the files into ``<run dir>/decode/epoch-<E>-avg<N>.../``.
``--avg N`` needs N epochs up to the decoded one (as the authors' decode.py
asserts): more is one ``error:`` line before any decoding. A grid's own
``decode.avg`` (and a running average that cannot cover the epochs) averages
what exists instead, says so in the log, and is stored under the key of what
was averaged (``avg9`` for ``avg: 20`` after 9 epochs; ``avg1`` for plain weights).
``--checkpoint`` decodes any file in the trainer's checkpoint format (one
file's weights, or several averaged), e.g. one ``harness import-icefall`` wrote.
"""
from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

from harness.tables import Table

from harness.decoding.decode import METHOD_HEADS

from .common import (UserError, add_grid_options, load_grid_cells, open_store, out_path_problem, positive_int,
                     store_path)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("grid", nargs="?", help="grid file whose cells to decode (or give --checkpoint)")
    add_grid_options(p)
    p.add_argument("--run-root", help="run directories (default: the grid's, else runs/<grid name>)")
    p.add_argument("--epoch", type=positive_int, nargs="+", metavar="E",
                   help="epoch checkpoint(s) to decode (default: the last)")
    p.add_argument("--avg", type=positive_int, nargs="+", metavar="N",
                   help="average the last N epochs, N at most the epoch decoded (else an error, as the "
                        "authors' decode.py); several values sweep (default: decode.avg, which averages "
                        "the epochs that exist and is stored as such)")
    p.add_argument("--use-averaged-model", action=argparse.BooleanOptionalAction, default=None,
                   help="average with the running-average model (default: decode.use_averaged_model; "
                        "with --checkpoint: off)")
    p.add_argument("--methods", nargs="+", metavar="METHOD",
                   help=f"decoding methods, of {', '.join(METHOD_HEADS)} (default: decode.methods; with "
                        "--checkpoint: the default methods of the checkpoint's objective)")
    p.add_argument("--beam", type=positive_int, help="beam of the beam searches (default: decode.beam)")
    p.add_argument("--test-sets", nargs="+", metavar="SET", help="test splits (default: data.test_sets, else all)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--checkpoint", nargs="+", metavar="PATH",
                   help="decode these checkpoint file(s) (averaged plainly) instead of a grid's cells")
    p.add_argument("--variant", help="with --checkpoint: the variant (default: the checkpoint's)")
    p.add_argument("--objective", help="with --checkpoint: the objective (default: the checkpoint's, "
                                       "else transducer)")
    p.add_argument("--data", metavar="DIR", help="with --checkpoint: the prepared corpus to decode")
    p.add_argument("--out", metavar="DIR", help="with --checkpoint: folder for the result files "
                                                "(default: decode-<name> beside the first checkpoint)")


def _table(rows: list[tuple[str, object]], title: str) -> Table:
    t = Table(title, ["cell", "epoch", "decode key", "test set", "method", "WER/CER %", "errors / ref",
                      "weights"])
    for cell, r in rows:
        t.add([cell, str(r.epoch if r.epoch is not None else "-"), r.decode_key, r.test_set, r.method,
               r.stats.wer, f"{r.stats.errors} / {r.stats.ref_words}", r.averaged])
    return t


def _log(name: str) -> "logging.Logger":
    import logging

    log = logging.getLogger(f"harness.decode.{name}")
    log.setLevel(logging.INFO)
    log.propagate = False
    if not log.handlers:
        h = logging.StreamHandler(sys.stderr)
        h.setFormatter(logging.Formatter(f"%(asctime)s [decode {name}] %(message)s"))
        log.addHandler(h)
    return log


def run(args: argparse.Namespace) -> int:
    if (args.grid is None) == (args.checkpoint is None):
        raise UserError("decode: give a grid file or --checkpoint PATH (one of them)")
    if args.checkpoint:
        return _run_checkpoint(args)
    if args.variant or args.data or args.objective or args.out:
        raise UserError("decode GRID: --variant, --objective, --data and --out go with --checkpoint")
    return _run_grid(args)


def _settings(base, args):
    return base.with_(methods=tuple(args.methods) if args.methods else None, beam=args.beam,
                      use_averaged_model=args.use_averaged_model,
                      test_sets=tuple(args.test_sets) if args.test_sets else None)


def _run_grid(args: argparse.Namespace) -> int:
    from harness.decoding import DecodeSettings
    from harness.evaluate.cell_log import cell_logger
    from harness.evaluate.checkpoint import epoch_checkpoints
    from harness.evaluate.data_setup import load_test_data
    from harness.evaluate.decode import decode_epoch
    from harness.devices import select_device

    grid, cells = load_grid_cells(args)
    run_root = Path(args.run_root) if args.run_root else grid.run_root
    spath = store_path(args, grid)
    store = open_store(spath)
    device = select_device(args.device, 0)
    rows, skipped, chosen = [], [], []
    for cell in cells:  # every cell's --epoch and --avg checked before any decoding
        run_dir = run_root / cell.cell_id
        epochs = epoch_checkpoints(run_dir / "checkpoints")
        if not epochs:
            skipped.append(f"{cell.cell_id} {cell.name}: no epoch checkpoint in {run_dir / 'checkpoints'} "
                           "(train it with `harness run`)")
            continue
        wanted = args.epoch or [max(epochs)]
        missing = [e for e in wanted if e not in epochs]
        if missing:
            raise UserError(f"{cell.name} ({cell.cell_id}): --epoch: no checkpoint for epoch(s) "
                            f"{missing}; allowed: {', '.join(map(str, sorted(epochs)))}")
        # as the authors' decode.py (start = epoch - avg must be >= 0): --avg N needs N epochs up
        # to the decoded one; a grid's own decode.avg averages what exists and says so instead
        too_many = [a for a in args.avg or [] if a > min(wanted)]
        if too_many:
            raise UserError(f"{cell.name} ({cell.cell_id}): --avg {max(too_many)}: epoch {min(wanted)} has "
                            f"only {min(wanted)} epoch(s) to average; allowed: --avg 1 to {min(wanted)} "
                            f"(or a later --epoch)")
        chosen.append((cell, run_dir, wanted))
    for cell, run_dir, wanted in chosen:
        try:
            settings = _settings(DecodeSettings.from_config(cell.config), args)
            data = load_test_data(cell.config.data.dir, settings.test_sets)
        except (ValueError, KeyError, FileNotFoundError) as e:
            raise UserError(f"{cell.name} ({cell.cell_id}): {e.args[0] if e.args else e}")
        log = cell_logger(run_dir, cell, 0, stem="decode")
        try:
            for epoch in wanted:
                for avg in args.avg or [settings.avg]:
                    for r in decode_epoch(cell, data, run_dir / "checkpoints", epoch, device, store, log,
                                          settings=settings.with_(avg=avg)):
                        rows.append((f"{cell.name} {cell.cell_id}", r))
        except ValueError as e:  # no method applies to the cell's heads
            raise UserError(f"{cell.name} ({cell.cell_id}): {e}")
        finally:
            for h in list(log.handlers):
                h.close()
                log.removeHandler(h)
    for s in skipped:
        print(f"skip {s}", file=sys.stderr)
    if not rows:
        raise UserError(f"{args.grid}: no chosen cell has an epoch checkpoint under {run_root}")
    print(_table(rows, f"grid {grid.name}: {len(rows)} result(s), store {spath}").to_text())
    return 0


def _run_checkpoint(args: argparse.Namespace) -> int:
    from harness.decoding import DecodeSettings
    from harness.evaluate.data_setup import load_test_data
    from harness.evaluate.decode import CheckpointError, decode_checkpoints, record
    from harness.devices import select_device

    if args.grid or args.cells or args.epoch or args.avg or args.run_root or args.overrides:
        raise UserError("decode --checkpoint: --cells, --epoch, --avg, --run-root and --set go with a "
                        "grid; several checkpoints are averaged")
    if not args.data:
        raise UserError("decode --checkpoint: give --data DIR (the prepared corpus to decode)")
    paths = [Path(p) for p in args.checkpoint]
    try:
        # no methods: the checkpoint objective's default ones (known once the checkpoint is read)
        settings = _settings(DecodeSettings(methods=(), use_averaged_model=False), args)
        data = load_test_data(args.data, settings.test_sets)
    except (ValueError, KeyError, FileNotFoundError) as e:
        raise UserError(f"decode --checkpoint: {e.args[0] if e.args else e}")
    # named after the last checkpoint, whose epoch the results' epoch column records
    name = paths[-1].stem if len(paths) == 1 else f"{paths[-1].stem}-avg{len(paths)}"
    out = Path(args.out) if args.out else paths[-1].resolve().parent / f"decode-{name}"
    problem = out_path_problem(out, folder=True)
    if problem:
        raise UserError(f"decode --checkpoint: {problem}" if args.out else
                        f"decode --checkpoint: {problem.replace('--out ', 'result folder ', 1)}; pass --out")
    store = open_store(args.store) if args.store else None  # a bad store before the decoding work
    try:
        results = decode_checkpoints(paths, data, settings, select_device(args.device, 0), out, _log(name),
                                     variant=args.variant, objective=args.objective)
    except CheckpointError as e:
        raise UserError(f"decode --checkpoint: {e}")
    except ValueError as e:  # an unknown variant or objective, or no method for the heads
        raise UserError(f"decode --checkpoint: {e}")
    if store is not None:
        cid = "ckpt-" + hashlib.sha256("\n".join(str(p.resolve()) for p in paths).encode()).hexdigest()[:7]
        store.set_cell(cid, name=name, status="done", run_dir=str(out),
                       variant=args.variant or None)
        record(store, cid, results)
    print(_table([(name, r) for r in results], f"{name}: files in {out}").to_text())
    return 0
