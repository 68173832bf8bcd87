"""What `plan` and `run` refuse before any training: every problem of a grid at once, the
silent-wrong-data case (a prepared corpus with other options), and what they let through."""
import os
import subprocess
import sys

import pytest

from gridtext import BASE

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
    from harness.train.data_setup import ensure_prepared

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


def test_plan_into_a_closed_pipe_ends_quietly(write_grid):
    """`harness plan GRID | head`: the reader went away; no BrokenPipeError traceback."""
    path = write_grid()
    r, w = os.pipe()
    os.close(r)  # every write to w fails with EPIPE
    proc = subprocess.run([sys.executable, "-m", "harness.cli", "plan", path, "--no-flops"], stdout=w,
                          stderr=subprocess.PIPE, text=True, timeout=120)
    os.close(w)
    assert proc.stderr == "" and proc.returncode == 1, proc.stderr
