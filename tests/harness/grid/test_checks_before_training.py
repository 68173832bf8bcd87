"""What `plan` and `run` refuse before any training: every problem of a grid at once, the
silent-wrong-data case (a prepared corpus with other options), and what they let through."""
import os
import subprocess
import sys

import pytest

from support.gridtext import BASE

from harness.cli import main


def _lines(err: str) -> list[str]:
    return [ln for ln in err.splitlines() if ln.strip()]


def test_every_problem_of_a_grid_is_reported_at_once(write_grid, capsys):
    text = BASE.replace("max_duration: 40", "max_duration: 40, options: {speed_pertub: false}")
    text = text.replace("objective: ctc", "objective: ctc\n  loss: {prune_rang: 3}\n"
                        "  optimizer: {schedule_options: {lr_batchs: 1}}")
    text += "  decode: {methods: [viterbi]}\n"
    text += "ablations:\n  - {name: a, set: {train.epoch: 3}}\n  - {name: b, set: {data.options.tier: tinyy}}\n"
    path = write_grid(text)
    assert main(["plan", path, "--no-flops"]) == 2
    lines = _lines(capsys.readouterr().err)
    assert all(ln.startswith(f"error: {path}: ") for ln in lines), lines
    wanted = ["base.data.options.speed_pertub", "base.loss.prune_rang", "base.optimizer.schedule_options",
              "base.decode.methods: unknown decoding method 'viterbi'", "ablations[0].set: train.epoch",
              "ablations[1].set: data.options.tier"]
    for w in wanted:
        assert sum(w in ln for ln in lines) == 1, (w, lines)
    assert len(lines) == len(set(lines)) == 6, lines  # a base problem is said once, not once per cell


def test_a_method_for_other_rows_of_an_objective_axis_is_fine(write_grid, capsys):
    text = BASE + "  decode: {methods: [ctc_greedy_search, modified_beam_search]}\n" \
                  "axes: {objective: [ctc, transducer]}\n"
    assert main(["plan", write_grid(text), "--no-flops"]) == 0


@pytest.mark.parametrize("objective, method", [("ctc", "ctc_greedy_search"),
                                               ("transducer", "modified_beam_search"),
                                               ("ctc_aed", "attention_rescoring")])
def test_default_decoding_method_follows_the_objective(write_grid, objective, method):
    from harness.grid.cells import load_cells

    _, (cell,) = load_cells(write_grid(BASE.replace("objective: ctc", f"objective: {objective}")))
    assert cell.config.decode.methods is None and cell.config.decode_methods == [method]


def test_changed_tier_on_a_prepared_corpus_is_refused_before_training(tiny_grid, tiny_corpus, tmp_path, capsys):
    """The silent-wrong-data case: `tier: tiny` -> `easy` with the same data.dir."""
    path = tiny_grid()
    assert main(["plan", path, "--no-flops"]) == 0  # the prepared tiny corpus, as recorded
    text = open(path).read().replace("options: {tier: tiny}", "options: {tier: easy}")
    open(path, "w").write(text)
    capsys.readouterr()
    for command in ("plan", "run"):
        assert main([command, path] + (["--no-flops"] if command == "plan" else [])) == 2
        (line,) = _lines(capsys.readouterr().err)
        assert line.startswith(f"error: {path}: base.data.options: data.dir {tiny_corpus} was prepared "
                               "with tier='tiny', this cell asks for tier='easy'; allowed:"), line
    assert not (tmp_path / "runs" / "results.sqlite").exists()  # no cell was even recorded
    # the other identity options too, and what the checks of a prepared folder see
    for old, new, key in (("options: {tier: tiny}", "options: {tier: tiny, vocab_size: 100}", "vocab_size"),
                          ("options: {tier: tiny}", "options: {tier: tiny, speed_perturb: false}",
                           "speed_perturb"),
                          ("max_train_cuts: 10", "max_train_cuts: 10, test_sets: [test, tst]",
                           "unknown split(s) tst")):
        open(path, "w").write(text.replace("options: {tier: easy}", "options: {tier: tiny}").replace(old, new))
        assert main(["plan", path, "--no-flops"]) == 2
        (line,) = _lines(capsys.readouterr().err)
        assert key in line, line


def test_the_runner_refuses_a_prepared_corpus_with_other_options(tiny_corpus):
    """Also a runner that starts without the grid checks (a submitit job) never trains on it."""
    from harness.config import DataSection
    from harness.data.errors import DataError
    from harness.evaluate.data_setup import ensure_prepared

    ok = DataSection(corpus="synthetic", dir=str(tiny_corpus), options={"tier": "tiny"}, max_duration=8)
    assert ensure_prepared(ok).corpus == "synthetic"
    with pytest.raises(DataError, match="tier"):
        ensure_prepared(ok.model_copy(update={"options": {"tier": "easy"}}))


def test_non_utf8_grid_file_is_one_line(tmp_path, capsys):
    path = tmp_path / "binary.yaml"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\xff\xfe")
    assert main(["plan", str(path)]) == 2
    (line,) = _lines(capsys.readouterr().err)
    assert line == f"error: {path}: (top level): not UTF-8 text (byte 0x89 at offset 0); a grid file is YAML text"


@pytest.mark.parametrize("argv", [["plan", "--no-flops"], ["status"], ["variants"]])
def test_output_into_a_closed_pipe_ends_quietly_with_status_0(write_grid, tmp_path, argv):
    """`harness plan GRID | head`: the reader had what it wanted and went away; no
    BrokenPipeError traceback, and exit status 0 as `harness variants | head` (decode: in
    test_decode_command)."""
    path = write_grid()
    r, w = os.pipe()
    os.close(r)  # every write to w fails with EPIPE
    cmd = [argv[0]] + ([path] if argv[0] != "variants" else []) + argv[1:]
    proc = subprocess.run([sys.executable, "-m", "harness.cli", *cmd], stdout=w, stderr=subprocess.PIPE,
                          text=True, timeout=120, cwd=tmp_path)
    os.close(w)
    assert proc.stderr == "" and proc.returncode == 0, proc.stderr


def test_plan_without_the_corpus_points_at_no_data_check(write_grid, tmp_path, capsys):
    text = BASE.replace("corpus: synthetic, dir: DATA", f"corpus: librispeech, dir: DATA, src_dir: {tmp_path}/no-ls")
    path = write_grid(text)
    assert main(["plan", path, "--no-flops"]) == 2
    (line,) = _lines(capsys.readouterr().err)
    assert line.startswith(f"error: {path}: base.data.src_dir: no such directory")
    assert line.endswith(f"; or plan without this machine's data: `harness plan {path} --no-data-check` "
                         "(`harness run` needs it)"), line
    assert main(["plan", path, "--no-flops", "--no-data-check"]) == 0
    capsys.readouterr()
    # a mistake in the grid itself: no such hint; `run` cannot do without the data: no hint
    assert main(["plan", write_grid(text.replace("max_duration: 40", "max_duration: -1")), "--no-flops"]) == 2
    assert "--no-data-check" not in capsys.readouterr().err
    assert main(["run", path]) == 2
    assert "--no-data-check" not in capsys.readouterr().err


def test_plan_no_flops_names_the_cells_left_out_of_gpu_hours(write_grid, capsys):
    path = write_grid(BASE + "ablations:\n  - {name: ln, set: {overrides.norm: layer_norm}}\n")
    assert main(["plan", path, "--no-flops"]) == 0
    out = capsys.readouterr().out
    total = next(ln for ln in out.splitlines() if ln.startswith("total:"))
    assert total.endswith("for 0 of 2 cell(s)"), total
    left = [ln for ln in out.splitlines() if ln.startswith("left out of the total:")]
    assert len(left) == 1 and left[0].startswith("left out of the total: 2 cell(s) with no FLOPs figure "
                                                 "(--no-flops, none in the store or the paper): ")
    assert left[0].endswith("; plan without --no-flops to measure them")


def test_cuda_without_a_gpu_is_refused_by_run_before_training(write_grid, tmp_path, capsys, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    path = write_grid(BASE.replace("{epochs: 2}", "{epochs: 2, device: cuda}").replace(
        "name: t", f"name: t\nrun_root: {tmp_path}/runs"))
    assert main(["run", path]) == 2
    err = _lines(capsys.readouterr().err)
    assert err == [f"error: {path}: base.train.device: 'cuda', but torch sees no CUDA GPU on this machine "
                   "(cell(s) base); allowed here: auto, cpu (or run the grid on a GPU machine)"], err
    assert not (tmp_path / "runs").exists()
    # plan may be for another machine: a note, exit 0
    assert main(["plan", path, "--no-flops"]) == 0
    assert "note: " + err[0][len("error: "):] + " (`harness run` here refuses it)" in capsys.readouterr().out


def test_averaging_that_may_be_impossible_is_named_before_training(write_grid, capsys):
    path = write_grid(BASE.replace("{epochs: 2}", "{max_steps: 6, save_every_n: 5, average_period: 5}"))
    assert main(["plan", path, "--no-flops"]) == 0
    notes = [ln for ln in capsys.readouterr().out.splitlines() if "average_period" in ln]
    assert len(notes) == 1 and notes[0].startswith(
        "note: train.max_steps 6 is not a multiple of train.average_period 5: if the last epoch ends after "
        "step 5, the running average holds nothing of it and the cell decodes its plain checkpoint; set "
        "train.average_period to a divisor of max_steps (e.g. 3), train.max_steps to a multiple of 5 "
        "(e.g. 10), or decode.use_averaged_model: false (cell(s) "), notes
    path = write_grid(BASE.replace("{epochs: 2}", "{max_steps: 40}"))
    assert main(["plan", path, "--no-flops"]) == 0
    assert "note: train.max_steps 40 is below train.average_period 200: the running average is never " \
           "updated" in capsys.readouterr().out
    for fine in ("{max_steps: 10, save_every_n: 5, average_period: 5}", "{epochs: 2}"):
        assert main(["plan", write_grid(BASE.replace("{epochs: 2}", fine)), "--no-flops"]) == 0
        assert "average_period" not in capsys.readouterr().out


def test_each_grid_without_a_store_gets_its_own(write_grid, tmp_path, capsys, monkeypatch):
    """Grids that name no store: results.sqlite in their run root (runs/<grid name>/), not the
    shared runs/results.sqlite, so a user's cells never appear in the demo's report."""
    from harness.grid.loader import load_grid

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("HARNESS_STORE", raising=False)
    grid = load_grid(write_grid())
    assert grid.store_path == tmp_path.joinpath("runs", "t", "results.sqlite").relative_to(tmp_path)
    assert load_grid(write_grid(BASE.replace("name: t", "name: t\nrun_root: elsewhere"))).store_path == \
        tmp_path.joinpath("elsewhere", "results.sqlite").relative_to(tmp_path)
    assert load_grid(write_grid(BASE.replace("name: t", "name: t\nstore: mine.sqlite"))).store_path.name == \
        "mine.sqlite"
    from pathlib import Path

    default = Path(__file__).resolve().parents[3] / "experiments" / "default.yaml"
    assert load_grid(default).store_path.as_posix() == "runs/results.sqlite"  # named explicitly: kept
    # a grid that ran into the old shared default: one line saying how to keep using it
    from harness.store import ResultsStore

    (tmp_path / "runs").mkdir(exist_ok=True)
    ResultsStore("runs/results.sqlite").set_cell("abc", grid="t", name="base", status="done")
    for command in ("status", "run"):
        assert main([command, write_grid()]) == 2
        err = _lines(capsys.readouterr().err)
        assert len(err) == 1 and err[0].startswith(
            "error: runs/t/results.sqlite: no results store yet, but runs/results.sqlite (the shared default "
            "before each grid got its own store) holds 1 cell(s) of grid 't'; pass --store "
            "runs/results.sqlite"), err
