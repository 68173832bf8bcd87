"""``harness transcribe``: audio files -> text with a trained cell or a checkpoint.

    harness transcribe runs/<grid>/<cell id> a.wav b.flac [--method greedy_search]
                       [--epoch E --avg N] [--json]

Prints ``path<TAB>text`` per file, in the order given (``--json``: one JSON
document with each file's duration and decoding time and the run's RTFx). Any
sample rate and channel count is read (resampled to 16 kHz and mixed down, with
a note on stderr); see :mod:`harness.evaluate.transcribe`. A file that cannot be
read is one ``error: PATH: ...`` line on stderr; the others are still
transcribed and the exit status is 1. The BPE model is the one of the corpus the
cell was trained on (its ``data.dir``), or ``--bpe-model``.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    from harness.decoding import METHOD_HEADS

    from .common import positive_float, positive_int
    from .model_source import add_choice_arguments

    p.add_argument("source", metavar="CELL_OR_CHECKPOINT",
                   help="a cell's run directory (last epoch, averaged as it decodes) or a harness checkpoint")
    p.add_argument("audio", nargs="+", metavar="AUDIO", help="audio files (wav, flac, mp3 where lhotse's "
                                                             "backends read it; any rate and channels)")
    p.add_argument("--method", choices=list(METHOD_HEADS),
                   help="decoding method (default: greedy_search, else ctc_greedy_search)")
    p.add_argument("--beam", type=positive_int, default=4, help="beam of the beam searches (default 4)")
    add_choice_arguments(p)
    p.add_argument("--bpe-model", metavar="PATH",
                   help="the sentencepiece model of the units (default: the cell's prepared corpus's)")
    p.add_argument("--batch-duration", type=positive_float, default=200.0, metavar="SECONDS",
                   help="most seconds of padded audio per batch (default 200)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--json", action="store_true",
                   help="print one JSON document: each file's text, duration and time, and the RTFx")


def run(args: argparse.Namespace) -> int:
    from harness.decoding import available_methods
    from harness.devices import select_device
    from harness.evaluate.transcribe import Failure, transcribe

    from .common import UserError, file_error
    from .model_source import Choice, SourceError, find_tokenizer, load_source_model

    try:
        model, source = load_source_model(args.source, Choice.from_args(args))
        tokenizer = find_tokenizer(source.config, args.bpe_model)
    except SourceError as e:
        raise file_error(args.source, e)
    if tokenizer.vocab_size != model.vocab_size:
        raise file_error(args.source, f"the model has {model.vocab_size} units but the BPE model "
                                      f"{tokenizer.path} has {tokenizer.vocab_size}: give the --bpe-model "
                                      "it was trained with")
    methods = available_methods(model)
    method = args.method or methods[0]
    if method not in methods:
        raise UserError(f"--method: {method} does not apply to this model's heads "
                        f"({', '.join(model.head_names)}); allowed: {', '.join(methods)}")
    results, totals = transcribe(model, tokenizer.decode, args.audio, method, beam=args.beam,
                                 max_duration=args.batch_duration, device=select_device(args.device, 0),
                                 unk_id=tokenizer.unk_id)
    for r in results:
        if isinstance(r, Failure):
            print(f"error: {r.path}: {r.reason}", file=sys.stderr)
        else:
            for note in r.notes:
                print(f"note: {r.path}: {note}", file=sys.stderr)
    if args.json:
        doc = {"source": str(args.source), "weights": source.note, "method": method,
               "files": [{"path": r.path, "text": r.text, "duration": round(r.duration, 3),
                          "seconds": round(r.seconds, 4), "notes": r.notes}
                         for r in results if not isinstance(r, Failure)],
               "failed": [{"path": r.path, "error": r.reason} for r in results if isinstance(r, Failure)],
               "audio_seconds": round(totals["audio_seconds"], 3), "seconds": round(totals["seconds"], 4),
               "rtfx": round(totals["rtfx"], 2)}
        print(json.dumps(doc, indent=1, ensure_ascii=False))
    else:
        for r in results:
            if not isinstance(r, Failure):
                print(f"{r.path}\t{r.text}")
    return 1 if totals["failed"] else 0
