"""``harness export``: the encoder and the heads greedy decoding needs, as TorchScript or ONNX.

Each exported part is run on fresh inputs and compared with the eager model;
the differences are printed and kept in ``export.json`` next to the parts.
"""
from __future__ import annotations

import argparse

#: largest |exported - eager| accepted (float32 reorderings stay far below it)
TOLERANCE = 1e-3


def add_arguments(p: argparse.ArgumentParser) -> None:
    from .model_source import add_choice_arguments

    from variants.interop.export import FORMATS

    p.add_argument("source", metavar="CELL_OR_CKPT",
                   help="a cell's run directory (last epoch, averaged as it decodes) or a harness checkpoint")
    add_choice_arguments(p)
    p.add_argument("--format", required=True, choices=FORMATS)
    p.add_argument("--out", required=True, help="directory for the parts and export.json")
    p.add_argument("--frames", type=int, default=1000,
                   help="input frames (100 per second) the encoder is exported for; pad shorter inputs (default 1000)")
    p.add_argument("--batch", type=int, default=1, help="utterances per encoder call (default 1)")


def run(args: argparse.Namespace) -> int:
    from variants.interop.export import export_model, onnxruntime_available

    from .common import file_error, user_error
    from .model_source import Choice, SourceError, load_model

    for name in ("frames", "batch"):
        if getattr(args, name) < 1:
            return user_error(f"--{name}: must be >= 1, got {getattr(args, name)}")
    try:
        model = load_model(args.source, Choice.from_args(args))
    except SourceError as e:
        return file_error(args.source, e)
    if args.format == "onnx":
        try:
            import onnx  # noqa: F401
            import onnxscript  # noqa: F401
        except ImportError as e:
            return user_error(f"--format onnx: needs the onnx and onnxscript packages ({e.name} is missing; "
                              "pip install onnx onnxscript onnxruntime)")
    try:
        info = export_model(model, args.format, args.out, batch=args.batch, frames=args.frames)
    except ValueError as e:
        return file_error(args.source, e)
    except Exception as e:  # noqa: BLE001 - an exporter's failure: say which, in one line
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        return file_error(args.source, f"--format {args.format}: the exporter failed: {type(e).__name__}: {first}",
                          status=1)
    bad = []
    for name, part in info["parts"].items():
        d = part["max_abs_diff"]
        shape = "any batch" if part["any_batch"] else f"batch {args.batch}"
        shown = "not checked (onnxruntime is not installed)" if d is None else f"max |exported - eager| = {d:.3g}"
        print(f"{args.out}/{part['file']}: {name} ({shape}) {shown}")
        if d is not None and not d <= TOLERANCE:
            bad.append(f"{name} differs by {d:.3g}")
    if args.format == "onnx" and not onnxruntime_available():
        print("note: install onnxruntime to check the ONNX parts against the eager model")
    if bad:
        return user_error(f"exported parts differ from the eager model beyond {TOLERANCE}: {'; '.join(bad)}",
                          status=1)
    return 0
