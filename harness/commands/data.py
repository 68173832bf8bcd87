"""``harness data``: prepare corpora, or write the synthetic corpus as a LibriSpeech copy.

    harness data prepare --corpus synthetic|librispeech|aishell|lhotse|kaldi [--out DIR]
                         [--src DIR | --manifests DIR] [--tier T] [--hours H] [--voices N]
                         [--seed N] [--num-jobs N] [--vocab-size N] [--no-speed-perturb]
                         [--train-set auto|100|960] [--oov-chars report|reject]
                         [--unit word|char] [--channel N] [--allow-dropped]

Each corpus's options are its model in harness.config.corpora; an option given to a
corpus that does not take it is an error.
    harness data write-librispeech --out DIR [--tier T] [--hours H] [--voices N] [--seed N]
"""
from __future__ import annotations

import argparse
import logging

from .common import UserError, out_path_problem, positive_float, positive_int


def _synthetic_args(p: argparse.ArgumentParser) -> None:
    from harness.data.synthetic.tiers import DEFAULT_TIER, TIERS

    p.add_argument("--tier", choices=list(TIERS), default=None,
                   help=f"synthetic corpus tier (default {DEFAULT_TIER})")
    p.add_argument("--hours", type=positive_float, default=None, help="synthetic training hours (tier's default)")
    p.add_argument("--voices", type=positive_int, default=None,
                   help="number of eSpeak voices (accents) for training speakers (tier's default)")
    p.add_argument("--seed", type=int, default=0, help="synthetic corpus seed (default 0)")
    p.add_argument("--num-jobs", type=positive_int, default=None, help="worker processes (default: CPU count, at most 8)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    prep = sub.add_parser("prepare", help="manifests, fbank (lilcom), speed perturbation, BPE")
    from harness.config.corpora import CORPUS_NAMES

    prep.add_argument("--corpus", required=True, choices=list(CORPUS_NAMES))
    prep.add_argument("--out", default=None,
                      help="output directory (default data/CORPUS, where the default grid looks)")
    prep.add_argument("--src", default=None, help="local copy of LibriSpeech / Aishell-1; for kaldi: "
                                                  "a folder of Kaldi data directories, one per split")
    prep.add_argument("--manifests", default=None,
                      help="lhotse: a folder of lhotse manifests, a CutSet or a RecordingSet + "
                           "SupervisionSet per split (names decide train/dev/test)")
    _synthetic_args(prep)
    prep.add_argument("--vocab-size", type=positive_int, default=500, help="BPE units (default 500, as in the paper)")
    prep.add_argument("--no-speed-perturb", action="store_true",
                      help="skip the 0.9/1.1 speed-perturbed training copies")
    prep.add_argument("--train-set", choices=["auto", "100", "960"], default="auto",
                      help="LibriSpeech training hours (auto: 960 when all parts are present)")
    prep.add_argument("--oov-chars", choices=["report", "reject"], default="report",
                      help="transcript characters outside the alphabet (LibriSpeech: A-Z, apostrophe, "
                           "space; lhotse/kaldi: letters, digits, marks, apostrophe, space): "
                           "report them in a warning (default) or refuse the corpus")
    prep.add_argument("--unit", choices=["word", "char"], default="word",
                      help="lhotse/kaldi: word (BPE units, WER; default) or char (characters, CER, "
                           "for Chinese-like text)")
    prep.add_argument("--channel", type=int, default=None,
                      help="lhotse/kaldi: keep this channel of multi-channel audio "
                           "(default: mix the channels down)")
    prep.add_argument("--allow-dropped", action="store_true",
                      help="let a test split lose utterances whose audio cannot be read "
                           "(default: an error); every dropped or changed utterance is listed in OUT/changes.jsonl")
    prep.add_argument("--quiet", action="store_true", help="no progress bars")
    ls = sub.add_parser("write-librispeech",
                        help="write the synthetic corpus in LibriSpeech's layout (FLAC, *.trans.txt)")
    ls.add_argument("--out", required=True, help="output directory")
    _synthetic_args(ls)


def run(args: argparse.Namespace) -> int:
    from harness.data.errors import DataError

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    problem = out_path_problem(args.out or f"data/{getattr(args, 'corpus', '')}", folder=True)
    if problem:
        raise UserError(problem)
    try:
        if args.action == "prepare":
            return _prepare(args)
        return _write_librispeech(args)
    except (DataError, FileNotFoundError, ValueError) as e:
        raise UserError(str(e))


#: command-line dest -> corpus option (harness.config.corpora)
_OPTION_FLAGS = {"tier": "tier", "hours": "hours", "voices": "voices", "seed": "seed", "num_jobs": "num_jobs",
                 "vocab_size": "vocab_size", "train_set": "train_set", "oov_chars": "oov_chars",
                 "unit": "unit", "channel": "channel", "allow_dropped": "allow_dropped"}


def _prepare(args: argparse.Namespace) -> int:
    from harness.config.corpora import CORPUS_OPTIONS, corpora_taking
    from harness.data.changes import load_changes, summary_line
    from harness.data.prepare import prepare_corpus

    defaults = build_parser_defaults()
    takes = CORPUS_OPTIONS[args.corpus].model_fields
    options: dict = {"speed_perturb": not args.no_speed_perturb, "progress": not args.quiet}
    for dest, name in _OPTION_FLAGS.items():
        value = getattr(args, dest)
        if name in takes:
            options[name] = value
        elif value != defaults[dest]:
            flag = "--" + dest.replace("_", "-")
            raise UserError(f"{flag} applies to --corpus {', '.join(corpora_taking(name))} only")
    from harness.data.corpora import get_recipe

    if args.manifests is not None and get_recipe(args.corpus).src_flag != "--manifests":
        raise UserError(f"--manifests applies to --corpus lhotse only ({get_recipe(args.corpus).src_flag} "
                        f"gives {args.corpus}'s source)")
    out = args.out or f"data/{args.corpus}"
    prepared = prepare_corpus(args.corpus, out, args.manifests or args.src, **options)
    print(f"prepared {prepared.corpus} in {prepared.out_dir}")
    for name, path in prepared.splits.items():
        print(f"  {name:16s} {path}")
    print(f"  bpe model        {prepared.bpe_model} ({prepared.vocab_size} units, {prepared.unit} error rate)")
    print(f"  {summary_line(load_changes(prepared.out_dir), prepared.out_dir)}")
    return 0


def build_parser_defaults() -> dict:
    """The defaults of ``data prepare``'s options (to tell a given option from an untouched one)."""
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return vars(parser.parse_args(["prepare", "--corpus", "synthetic"]))


def _write_librispeech(args: argparse.Namespace) -> int:
    from harness.data.features import default_num_jobs
    from harness.data.synthetic.corpus import write_librispeech_layout
    from harness.data.synthetic.tiers import DEFAULT_TIER, get_tier

    tier = get_tier(args.tier or DEFAULT_TIER, hours=args.hours, voices=args.voices)
    plan = write_librispeech_layout(args.out, tier, seed=args.seed,
                                    num_jobs=args.num_jobs or default_num_jobs())
    print(f"wrote {sum(len(v) for v in plan.values())} utterances in LibriSpeech layout to {args.out}")
    return 0
