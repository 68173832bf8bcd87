"""`--set key.path=value` on the grid commands: applied to every cell, validated like the file."""
from support.gridtext import BASE

from harness.cli import main
from harness.grid.cells import expand
from harness.grid.loader import load_grid


def test_set_changes_every_cell_and_its_id(write_grid, tmp_path, capsys):
    path = write_grid(BASE + "ablations:\n  - {name: ln, set: {overrides.norm: layer_norm}}\n")
    grid = load_grid(path)
    plain = expand(grid)
    changed = expand(grid, {"train.max_steps": 40, "overrides.activation": "swish", "optimizer.lr": 0.02})
    assert [c.config.train.max_steps for c in changed] == [40, 40]
    assert [c.config.overrides.get("norm") for c in changed] == [None, "layer_norm"]
    assert {c.spec.encoder.activation for c in changed} == {"swish"}
    assert not {c.cell_id for c in plain} & {c.cell_id for c in changed}
    # decoding settings are not training: the id stays
    same = expand(grid, {"decode.avg": 5, "decode.methods": ["ctc_greedy_search"], "data.test_sets": ["test"]})
    assert [c.cell_id for c in same] == [c.cell_id for c in plain]
    assert main(["status", path, "--store", str(tmp_path / "s.sqlite"), "--set", "train.max_steps=40",
                 "--set", "decode.avg=3"]) == 0
    assert changed[0].cell_id not in capsys.readouterr().out  # lr and norm were not set here


def test_set_mistakes_are_one_line(write_grid, capsys):
    path = write_grid(BASE)
    cases = [("train.max_stepz=4", "--set train.max_stepz: unknown key 'max_stepz'; allowed keys here:"),
             ("train.max_steps=-1", "--set train.max_steps: Input should be greater than 0"),
             ("variant=zipformer-q", "--set variant: unknown variant 'zipformer-q'"),
             ("train.epochs", "--set expects KEY=VALUE, got 'train.epochs'"),
             ("train.epochs=[1", "--set train.epochs: value is not valid YAML")]
    for item, message in cases:
        assert main(["plan", path, "--no-flops", "--set", item]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], (item, err)
