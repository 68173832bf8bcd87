"""``harness export``: the encoder and the heads greedy decoding needs, as TorchScript or ONNX,
in the layout sherpa-onnx's offline models use.

    harness export runs/<grid>/<cell id> --format onnx --out exp/onnx [--epoch E --avg N]

writes ``encoder``, ``decoder`` and ``joiner`` (transducer) and ``ctc`` (CTC: the
encoder and the CTC head in one file), each taking any batch size and, up to
``--max-seconds``, any length; ``tokens.txt`` and the BPE model (``bpe.model``)
beside them; ``export.json`` with each part's inputs, outputs, metadata and its
largest difference from the eager model over fresh inputs of three lengths and
two batch sizes (see :mod:`variants.interop.export`).
"""
from __future__ import annotations

import argparse
import shutil

#: largest |exported - eager| accepted (float32 reorderings stay far below it)
TOLERANCE = 1e-3


def add_arguments(p: argparse.ArgumentParser) -> None:
    from variants.interop.export import FORMATS

    from .common import positive_float
    from .model_source import add_choice_arguments

    p.add_argument("source", metavar="CELL_OR_CKPT",
                   help="a cell's run directory (last epoch, averaged as it decodes) or a harness checkpoint")
    add_choice_arguments(p)
    p.add_argument("--format", required=True, choices=FORMATS)
    p.add_argument("--out", required=True, help="directory for the parts, tokens.txt, bpe.model and export.json")
    p.add_argument("--frames", type=int, default=1000,
                   help="input frames (100 per second) of the example the parts are traced with (default 1000)")
    p.add_argument("--max-seconds", type=positive_float, default=300.0,
                   help="longest input the exported encoder takes (its relative-position tables are stored "
                        "for it; default 300)")
    p.add_argument("--bpe-model", metavar="PATH",
                   help="the units' sentencepiece model (default: the cell's prepared corpus's)")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from variants.interop.export import export_model, onnxruntime_available

    from .common import UserError, file_error
    from .model_source import Choice, SourceError, find_tokenizer, load_source_model

    if args.frames < 1:
        raise UserError(f"--frames: must be >= 1, got {args.frames}")
    max_frames = int(round(args.max_seconds * 100))
    if max_frames < args.frames:
        raise UserError(f"--max-seconds: {args.max_seconds:g} s is shorter than --frames {args.frames}")
    try:
        model, source = load_source_model(args.source, Choice.from_args(args))
    except SourceError as e:
        raise file_error(args.source, e)
    tokenizer = None
    try:
        tokenizer = find_tokenizer(source.config, args.bpe_model)
    except SourceError as e:
        if args.bpe_model:
            raise file_error(args.source, e)
        print(f"note: no tokens.txt or bpe.model written: {e}")
    if tokenizer is not None and tokenizer.vocab_size != model.vocab_size:
        raise file_error(args.source, f"the model has {model.vocab_size} units but the BPE model "
                                      f"{tokenizer.path} has {tokenizer.vocab_size}: give the --bpe-model "
                                      "it was trained with")
    if args.format == "onnx":
        try:
            import onnx  # noqa: F401
        except ImportError as e:
            raise UserError(f"--format onnx: needs the onnx package ({e.name} is missing; "
                            "pip install onnx onnxruntime)")
    pieces = [tokenizer.piece(i) for i in range(tokenizer.vocab_size)] if tokenizer is not None else None
    try:
        info = export_model(model, args.format, args.out, frames=args.frames, max_frames=max_frames,
                            pieces=pieces)
    except ValueError as e:
        raise file_error(args.source, e)
    except Exception as e:  # noqa: BLE001 - an exporter's failure: say which, in one line
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise file_error(args.source, f"--format {args.format}: the exporter failed: {type(e).__name__}: {first}",
                         status=1)
    if tokenizer is not None:
        shutil.copyfile(tokenizer.path, Path(args.out) / "bpe.model")
        print(f"{args.out}/tokens.txt, {args.out}/bpe.model: {tokenizer.vocab_size} units of {tokenizer.path}")
    print(f"weights of {source.note}; any batch size, up to {args.max_seconds:g} s of audio")
    bad = []
    for name, part in info["parts"].items():
        d = part["max_abs_diff"]
        sizes = part["checked_sizes"]
        sizes = ("batch x frames " + ", ".join(f"{b}x{t}" for b, t in sizes)) if sizes and sizes[0][1] \
            else "batch " + ", ".join(str(b) for b, _ in sizes)
        shown = "not checked (onnxruntime is not installed)" if d is None else \
            f"max |exported - eager| = {d:.3g} ({sizes})"
        print(f"{args.out}/{part['file']}: {name} {shown}")
        if d is not None and not d <= TOLERANCE:
            bad.append(f"{name} differs by {d:.3g}")
    if args.format == "onnx" and not onnxruntime_available():
        print("note: install onnxruntime to check the ONNX parts against the eager model")
    if bad:
        raise UserError(f"exported parts differ from the eager model beyond {TOLERANCE}: {'; '.join(bad)}",
                        status=1)
    return 0
