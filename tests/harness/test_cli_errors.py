"""Malformed command lines and inputs of every command: one line `error: ...`, exit status 2,
no traceback, nothing written."""
import pytest

from harness.cli import main

GRID = """name: t
store: TMP/r.sqlite
run_root: TMP/runs
base:
  variant: zipformer-tiny
  objective: ctc
  data: {corpus: synthetic, dir: TMP/data, max_duration: 40}
  train: {epochs: 1}
"""

# (argv with TMP for the test's folder, the start of the one line on stderr)
CASES = {
    "unknown command": (["bogus"], "error: harness: unknown command 'bogus'; allowed: variants, "),
    "describe an unknown variant": (["variants", "--describe", "zipformer-xl"],
                                    "error: --describe: unknown variant 'zipformer-xl'; allowed: zipformer-s"),
    "pattern matching no variant": (["variants", "nothing*"],
                                    "error: no variant matches 'nothing*'; allowed: zipformer-s"),
    "variants: unknown option": (["variants", "--bogus"],
                                 "error: harness variants: unrecognized arguments"),
    "plan without a grid": (["plan"], "error: harness plan: the following arguments are required: grid"),
    "plan: missing grid file": (["plan", "TMP/nope.yaml"], "error: TMP/nope.yaml: (top level): no such grid file"),
    "plan: a folder as grid": (["plan", "TMP"], "error: TMP: (top level): no such grid file"),
    "plan: zero GPUs": (["plan", "TMP/g.yaml", "--gpus", "0"],
                        "error: harness plan: argument --gpus: must be >= 1, got '0'"),
    "plan: no cell matches": (["plan", "TMP/g.yaml", "--cells", "zzz", "--no-flops"],
                              "error: TMP/g.yaml: --cells: no cell matches zzz"),
    "run: zero workers": (["run", "TMP/g.yaml", "--workers", "0"],
                          "error: harness run: argument --workers: must be >= 1, got '0'"),
    "run: unknown executor": (["run", "TMP/g.yaml", "--executor", "k8s"],
                              "error: harness run: argument --executor: invalid choice: 'k8s'"),
    "run: bad --slurm JSON": (["run", "TMP/g.yaml", "--slurm", "{bad"], "error: --slurm: not valid JSON"),
    "run: store that is not SQLite": (["run", "TMP/g.yaml", "--store", "TMP/g.yaml"],
                                      "error: TMP/g.yaml: not a readable results store"),
    "status: store that is not SQLite": (["status", "TMP/g.yaml", "--store", "TMP/g.yaml"],
                                         "error: TMP/g.yaml: not a readable results store"),
    "status: no cell matches": (["status", "TMP/g.yaml", "--cells", "zzz"],
                                "error: TMP/g.yaml: --cells: no cell matches zzz"),
    "report: store that is not SQLite": (["report", "--store", "TMP/g.yaml", "--out", "TMP/rep"],
                                         "error: TMP/g.yaml: not a readable results store"),
    "report: --out is a file": (["report", "--store", "TMP/none.sqlite", "--out", "TMP/g.yaml"],
                                "error: --out TMP/g.yaml: cannot write"),
    "bench: zero runs": (["bench", "zipformer-tiny", "--runs", "0", "--no-store"],
                         "error: harness bench: argument --runs: must be >= 1, got '0'"),
    "bench: batch not a number": (["bench", "zipformer-tiny", "--batch", "x", "--no-store"],
                                  "error: harness bench: argument --batch: expected an integer >= 1, got 'x'"),
    "bench: negative warm-up": (["bench", "zipformer-tiny", "--warmup", "-1", "--no-store"],
                                "error: harness bench: argument --warmup: must be >= 0"),
    "bench: negative timeout": (["bench", "zipformer-tiny", "--timeout", "-1", "--no-store"],
                                "error: harness bench: argument --timeout: must be > 0"),
    "bench: unknown device": (["bench", "--device", "tpu"], "error: harness bench: argument --device: "
                                                            "invalid choice: 'tpu'"),
    "bench: unknown variant": (["bench", "zipformer-xl", "--no-store"], "error: unknown variant 'zipformer-xl'"),
    "bench: bad --set": (["bench", "zipformer-tiny", "--set", "norm", "--no-store"],
                         "error: --set expects KEY=VALUE, got 'norm'"),
    "profile: unknown objective": (["profile", "zipformer-tiny", "--objectives", "rnnt", "--no-flops",
                                    "--no-store", "--out", "TMP/p"], "error: unknown objective(s) ['rnnt']"),
    "profile: zero frames": (["profile", "zipformer-tiny", "--frames", "0", "--no-store"],
                             "error: harness profile: argument --frames: must be >= 1"),
    "profile: pattern matching nothing": (["profile", "nothing*", "--no-store"],
                                          "error: unknown variant 'nothing*'; allowed:"),
    "data without an action": (["data"], "error: harness data: the following arguments are required: ACTION"),
    "data prepare without a corpus": (["data", "prepare"],
                                      "error: harness data prepare: the following arguments are required: --corpus"),
    "data prepare: unknown tier": (["data", "prepare", "--corpus", "synthetic", "--tier", "tinyy"],
                                   "error: harness data prepare: argument --tier: invalid choice: 'tinyy'"),
    "data prepare: negative hours": (["data", "prepare", "--corpus", "synthetic", "--hours", "-1"],
                                     "error: harness data prepare: argument --hours: must be > 0"),
    "data prepare: LibriSpeech folder missing": (
        ["data", "prepare", "--corpus", "librispeech", "--src", "TMP/nope", "--out", "TMP/o"],
        "error: librispeech directory TMP/nope does not exist"),
    "data prepare: LibriSpeech folder without its parts": (
        ["data", "prepare", "--corpus", "librispeech", "--src", "TMP/empty", "--out", "TMP/o"],
        "error: LibriSpeech at "),
    "data prepare: LibriSpeech parts without transcripts": (
        ["data", "prepare", "--corpus", "librispeech", "--src", "TMP/ls", "--out", "TMP/o", "--quiet"],
        "error: LibriSpeech part "),
    "data prepare: --src for the synthetic corpus": (
        ["data", "prepare", "--corpus", "synthetic", "--src", "TMP/ls", "--out", "TMP/o"],
        "error: the synthetic corpus is generated; it takes no source directory"),
    "data prepare: --oov-chars for the synthetic corpus": (
        ["data", "prepare", "--corpus", "synthetic", "--oov-chars", "reject", "--out", "TMP/o"],
        "error: --oov-chars applies to --corpus librispeech, lhotse, kaldi only"),
    "data write-librispeech without --out": (["data", "write-librispeech"],
                                             "error: harness data write-librispeech: the following arguments "
                                             "are required: --out"),
    "decode: zero beam": (["decode", "TMP/g.yaml", "--beam", "0"],
                          "error: harness decode: argument --beam: must be >= 1, got '0'"),
    "decode: zero avg": (["decode", "TMP/g.yaml", "--avg", "0"],
                         "error: harness decode: argument --avg: must be >= 1, got '0'"),
    "decode: grid with a bad --set": (["decode", "TMP/g.yaml", "--set", "decode.methods=[viterbi]"],
                                      "error: TMP/g.yaml: --set decode.methods: unknown decoding method"),
    "compare: a grid never run": (["compare", "TMP/g.yaml"],
                                   "error: TMP/g.yaml: grid t has no decoded cell in TMP/r.sqlite (no such store)"),
    "compare: unknown baseline": (["compare", "TMP/g.yaml", "--baseline", "nope"],
                                  "error: --baseline 'nope': not a row of grid t; allowed: base"),
    "compare: zero resamples": (["compare", "TMP/g.yaml", "--resamples", "0"],
                                "error: harness compare: argument --resamples: must be >= 1"),
    "compare: store that is not SQLite": (["compare", "TMP/g.yaml", "--store", "TMP/g.yaml"],
                                          "error: TMP/g.yaml: not a readable results store"),
    # --out under an existing file: refused before any work (the source is not even read)
    "export-icefall: --out under a file": (["export-icefall", "TMP/no-such-cell", "--out", "TMP/g.yaml/x.pt"],
                                           "error: --out TMP/g.yaml/x.pt: TMP/g.yaml is a file, not a folder"),
    "export-icefall: --out is a folder": (["export-icefall", "TMP/no-such-cell", "--out", "TMP/empty"],
                                          "error: --out TMP/empty: is a folder; allowed: a file path"),
    "import-icefall: --out under a file": (["import-icefall", "TMP/no.pt", "--out", "TMP/g.yaml/e.pt"],
                                           "error: --out TMP/g.yaml/e.pt: TMP/g.yaml is a file, not a folder"),
    "data prepare: --out under a file": (["data", "prepare", "--corpus", "synthetic", "--out", "TMP/g.yaml/o"],
                                         "error: --out TMP/g.yaml/o: TMP/g.yaml is a file, not a folder"),
    "data prepare: --out is a file": (["data", "prepare", "--corpus", "synthetic", "--out", "TMP/g.yaml"],
                                      "error: --out TMP/g.yaml: is a file, not a folder"),
    "data write-librispeech: --out under a file": (["data", "write-librispeech", "--out", "TMP/g.yaml/ls"],
                                                   "error: --out TMP/g.yaml/ls: TMP/g.yaml is a file"),
    "decode --checkpoint: --out under a file": (
        ["decode", "--checkpoint", "TMP/no.pt", "--data", "TMP/o", "--out", "TMP/g.yaml/d"],
        "error: decode --checkpoint: "),
    "run: Slurm executor without Slurm here": (["run", "TMP/g.yaml", "--executor", "slurm"],
                                               "error: --executor slurm: "),
    "bench: --precision without --train": (["bench", "zipformer-tiny", "--precision", "bf16", "--no-store"],
                                           "error: --precision bf16: goes with --train only"),
    "bench: --objective with --saved-bytes": (["bench", "zipformer-tiny", "--saved-bytes", "--objective", "ctc"],
                                              "error: --objective ctc: goes with --train only"),
    "demo: missing grid": (["demo", "--grid", "TMP/nope.yaml"], "error: TMP/nope.yaml: (top level): no such grid file"),
    "demo: zero workers": (["demo", "--workers", "0"], "error: harness demo: argument --workers: must be >= 1"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_command_line_gives_one_line_and_exit_2(case, tmp_path, capsys):
    argv, start = CASES[case]
    tmp = str(tmp_path)
    (tmp_path / "g.yaml").write_text(GRID.replace("TMP", tmp))
    (tmp_path / "empty").mkdir()
    for part in ("train-clean-100", "dev-clean", "test-clean", "test-other"):
        (tmp_path / "ls" / part).mkdir(parents=True)
    assert main([a.replace("TMP", tmp) for a in argv]) == 2
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip() and not ln.startswith(("INFO ", "WARNING "))]
    assert len(lines) == 1 and lines[0].startswith(start.replace("TMP", tmp)), err
    assert "Traceback" not in err
    assert not (tmp_path / "o" / "prepared.json").exists() and not (tmp_path / "r.sqlite").exists()


def test_help_of_every_command_exits_0(capsys):
    from harness.cli import COMMANDS

    assert main(["--help"]) == 0  # every command's one-line help, "%" included ("95% CIs")
    out = capsys.readouterr().out
    assert all(name in out for name in COMMANDS), out
    for name in COMMANDS:
        assert main([name, "--help"]) == 0
        assert capsys.readouterr().out.startswith(f"usage: harness {name}")


def test_malformed_store_wait_is_one_line_before_any_work(tmp_path, capsys, monkeypatch):
    """`HARNESS_STORE_WAIT_S=abc harness status GRID`: one line naming the variable, exit 2."""
    (tmp_path / "g.yaml").write_text(GRID.replace("TMP", str(tmp_path)))
    for bad in ("abc", "-5", ""):
        monkeypatch.setenv("HARNESS_STORE_WAIT_S", bad)
        for argv in (["status", str(tmp_path / "g.yaml")], ["run", str(tmp_path / "g.yaml")]):
            assert main(argv) == 2
            err = capsys.readouterr().err
            assert err.splitlines() == [err.strip()] and err.startswith(
                f"error: HARNESS_STORE_WAIT_S: expected seconds >= 0 (how long to wait for a locked results "
                f"store), got {bad!r}"), err
    assert not (tmp_path / "r.sqlite").exists() and not (tmp_path / "runs").exists()


def test_slurm_executor_needs_sbatch_and_srun(monkeypatch):
    """The check itself, independent of this machine: a missing command is named."""
    import shutil

    from harness.commands.run import executor_problem

    pytest.importorskip("submitit")
    monkeypatch.setattr(shutil, "which", lambda c: None if c == "srun" else f"/usr/bin/{c}")
    assert executor_problem("slurm").startswith("--executor slurm: no srun on this machine's PATH")
    monkeypatch.setattr(shutil, "which", lambda c: f"/usr/bin/{c}")
    assert executor_problem("slurm") is None and executor_problem("local") is None
