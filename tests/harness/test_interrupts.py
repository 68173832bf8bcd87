"""Ctrl-C in any command is one line and exit 130; an interrupted run stage ends the demo."""
import types

from harness import cli
from harness.commands import demo


def test_ctrl_c_in_a_command_is_one_line_and_exit_130(monkeypatch, capsys):
    import harness.commands.variants as variants_command

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(variants_command, "run", interrupted)
    assert cli.main(["variants"]) == 130
    assert capsys.readouterr().err.strip().splitlines() == ["harness variants: interrupted (SIGINT)"]


def test_demo_stops_after_an_interrupted_run_stage(monkeypatch, tmp_path, capsys):
    import harness.evaluate.data_setup as data_setup

    monkeypatch.setattr(data_setup, "ensure_prepared", lambda d: types.SimpleNamespace(
        out_dir=d.dir, splits={"train": "x"}))
    called = []

    def command(module, argv):
        called.append(module)
        return 143 if module == "harness.commands.run" else 0

    monkeypatch.setattr(demo, "_command", command)
    store = str(tmp_path / "s.sqlite")
    assert cli.main(["demo", "--store", store, "--out", str(tmp_path / "rep")]) == 143
    assert called == ["harness.commands.run"]  # no profile, bench, report or status after it
    assert "demo stopped: the run stage was interrupted (exit 143)" in capsys.readouterr().out
