"""`harness`: the command line. Each subcommand is one module under
``harness/commands/`` with ``add_arguments(parser)`` and ``run(args) -> int``;
modules are imported only when their command runs, so ``harness --help`` is
instant. A user's mistake prints one line ``error: ...`` and exits 2
(a command raises ``harness.commands.common.UserError``)."""
from __future__ import annotations

import argparse
import importlib
import os
import sys

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "variants": ("harness.commands.variants", "list registered variants or describe one"),
    "profile": ("harness.commands.profile", "params per part and encoder GFLOPs vs the paper"),
    "data": ("harness.commands.data", "prepare corpora (synthetic, LibriSpeech, Aishell-1, lhotse manifests, Kaldi dirs)"),
    "plan": ("harness.commands.plan", "print a grid's cells, their size and cost, train nothing"),
    "run": ("harness.commands.run", "train, decode and record every cell of a grid"),
    "status": ("harness.commands.status", "each cell's state and progress"),
    "decode": ("harness.commands.decode", "decode saved checkpoints again (epochs, avg, methods, beam)"),
    "bench": ("harness.commands.bench", "encoder inference time and peak memory"),
    "compare": ("harness.commands.compare", "each row vs the baseline: WER and difference with 95% CIs, verdicts"),
    "report": ("harness.commands.report", "regenerate the paper's tables and figures"),
    "demo": ("harness.commands.demo", "the main job: default grid on built-in data, then the report"),
    "import-icefall": ("harness.commands.import_icefall", "an authors' (icefall) checkpoint -> a harness checkpoint"),
    "export-icefall": ("harness.commands.export_icefall", "a harness model -> the authors' checkpoint layout"),
    "export": ("harness.commands.export", "encoder and greedy-decoding heads as TorchScript or ONNX"),
    "average": ("harness.commands.average", "one checkpoint averaged over a cell's last epochs"),
    "transcribe": ("harness.commands.transcribe", "audio files -> text with a trained cell or checkpoint"),
}


def version() -> str:
    """The installed package's version (``pyproject.toml``), else the source tree's."""
    from importlib import metadata

    try:
        return metadata.version("zipformer-harness")
    except metadata.PackageNotFoundError:  # run from a source tree that is not installed
        path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "pyproject.toml")
        try:
            with open(path) as f:
                for line in f:
                    if line.startswith("version"):
                        return line.split("=", 1)[1].strip().strip('"')
        except OSError:
            pass
        return "unknown"


class Parser(argparse.ArgumentParser):
    """argparse with the harness's error style: one line ``error: ...`` and exit status 2."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"error: {self.prog}: {message}; see '{self.prog} --help'\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="harness",
        description="Ablation and benchmarking harness for speech-recognition encoders "
                    "(Zipformer, Conformer).")
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_) in COMMANDS.items():
        sub.add_parser(name, help=help_.replace("%", "%%"), add_help=False)  # argparse %-formats help
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if argv and argv[0] == "--version":
        import platform

        import torch

        print(f"harness {version()} (torch {torch.__version__}, python {platform.python_version()})")
        return 0
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        if argv and argv[0] not in ("-h", "--help"):
            print(f"error: harness: unknown command {argv[0]!r}; allowed: {', '.join(COMMANDS)}; "
                  "see 'harness --help'", file=sys.stderr)
            return 2
        parser.print_help()
        return 0
    name = argv[0]
    module_name, help_ = COMMANDS[name]
    problem = _environment_problem()
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    module = importlib.import_module(module_name)
    sub = Parser(prog=f"harness {name}", description=help_)
    module.add_arguments(sub)
    try:
        args = sub.parse_args(argv[1:])
    except SystemExit as e:  # --help (0) or a usage error already printed as one line (2)
        return int(e.code or 0)
    from harness.commands.common import UserError, print_error

    try:
        return int(module.run(args) or 0)
    except UserError as e:
        print_error(str(e))
        return e.status
    except KeyboardInterrupt:  # Ctrl-C outside a runner's own handling (data prepare, plan, ...)
        print(f"harness {name}: interrupted (SIGINT)", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the reader went away (``harness status GRID | head``): the reader had what it wanted,
        # so end quietly with status 0 as ``variants`` (whose output fits the pipe) does; point
        # stdout at /dev/null so the interpreter's final flush does not raise again
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def _environment_problem() -> str | None:
    """A malformed environment variable the harness reads (one line naming it), else None."""
    wait = os.environ.get("HARNESS_STORE_WAIT_S")
    if wait is not None:
        try:
            ok = float(wait) >= 0
        except ValueError:
            ok = False
        if not ok:
            return (f"HARNESS_STORE_WAIT_S: expected seconds >= 0 (how long to wait for a locked "
                    f"results store), got {wait!r}; allowed: a number such as 300, or unset it")
    return None


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
