"""Malformed grid files: each gives one clear line (file, key path, what is allowed), no traceback."""
import subprocess
import sys

import pytest

from harness.cli import main

from gridtext import BASE

ABL = BASE + "ablations:\n"
CASES = {
    "unknown top-level key": (BASE + "bse: 1\n", "bse", "allowed keys here: name"),
    "unknown train key": (BASE.replace("epochs: 2", "epoch: 2"), "base.train.epoch", "epochs"),
    "wrong type epochs": (BASE.replace("epochs: 2", "epochs: ten"), "base.train.epochs", "integer"),
    "negative max_duration": (BASE.replace("max_duration: 40", "max_duration: -5"),
                              "base.data.max_duration", "greater than 0"),
    "unknown variant": (BASE.replace("zipformer-s", "zipformer-xs"), "base.variant", "zipformer-m"),
    "unknown override switch": (BASE.replace("num_encoder_layers:", "num_encoder_layer:"),
                                "overrides", "allowed"),
    "impossible dims (unmasked > dim)": (
        BASE.replace("num_encoder_layers: [1, 1, 1, 1, 1, 1]",
                     "encoder_unmasked_dim: [512, 512, 512, 512, 512, 512]"),
        "overrides", "exceeds encoder_dim"),
    "per-stack length mismatch": (BASE.replace("[1, 1, 1, 1, 1, 1]", "[1, 1]"), "overrides",
                                  "one entry per stack"),
    "even conv kernel": (BASE.replace("num_encoder_layers: [1, 1, 1, 1, 1, 1]",
                                      "cnn_module_kernel: [4, 31, 15, 15, 15, 31]"), "overrides", "odd"),
    "conformer heads do not divide dim": (
        BASE.replace("zipformer-s", "conformer-s").replace(
            "num_encoder_layers: [1, 1, 1, 1, 1, 1]", "nhead: 7"), "overrides", "divisible"),
    "missing data": (BASE.replace("  data: {corpus: synthetic, dir: DATA, max_duration: 40}\n", ""),
                     "base.data", "missing"),
    "missing corpus": (BASE.replace("corpus: synthetic, ", ""), "base.data.corpus", "missing"),
    "unknown corpus": (BASE.replace("corpus: synthetic", "corpus: timit"), "base.data.corpus",
                       "'synthetic'"),
    "no training budget": (BASE.replace("{epochs: 2}", "{accum_grad: 2}"), "base.train",
                           "train.epochs, train.max_steps"),
    "bad precision": (BASE.replace("{epochs: 2}", "{epochs: 2, precision: fp8}"),
                      "base.train.precision", "'bf16'"),
    "bad objective": (BASE.replace("objective: ctc", "objective: rnnt"), "base.objective",
                      "transducer, ctc, ctc_aed"),
    "ablation without name": (ABL + "  - set: {overrides.norm: layer_norm}\n", "ablations[0].name",
                              "missing"),
    "duplicate ablation names": (ABL + "  - {name: a, set: {overrides.norm: layer_norm}}\n"
                                 "  - {name: a, set: {overrides.activation: swish}}\n",
                                 "(top level)", "unique"),
    "ablation sets unknown key": (ABL + "  - {name: a, set: {train.epoch: 3}}\n",
                                  "ablations[0].set: train.epoch", "epochs"),
    "ablation sets unknown variant": (ABL + "  - {name: a, set: {variant: nope}}\n",
                                      "ablations[0].set: variant", "zipformer-m"),
    "ablation sets bad switch value": (ABL + "  - {name: a, set: {overrides.norm: rms_norm}}\n",
                                       "ablations[0] -> overrides", "layer_norm"),
    "ablation identical to base": (ABL + "  - {name: a, set: {train.epochs: 2}}\n",
                                   "ablations[0]", "same config"),
    "empty axis": (BASE + "axes: {objective: []}\n", "(top level)", "no values"),
    "axis row with unknown key": (BASE + "axes:\n  s:\n    - {name: x, sett: {}}\n",
                                  "axes.s[0].sett", "allowed keys here: name, set"),
    "seeds wrong type": (BASE.replace("objective: ctc", "objective: ctc\n  seeds: [one]"),
                         "base.seeds[0]", "integer"),
    "no decoding method": (BASE + "  decode: {methods: []}\n", "base.decode.methods", "at least 1"),
    "save_every_n < average_period": (BASE.replace("{epochs: 2}", "{epochs: 2, save_every_n: 10}"),
                                      "base.train", "average_period"),
    "YAML syntax error": (BASE + "axes: {objective: [ctc\n", "(top level)", "not valid YAML"),
    "top level is a list": ("- base\n", "(top level)", "must be a mapping"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_malformed_grid_gives_one_clear_line(case, write_grid, capsys):
    text, key_path, allowed = CASES[case]
    path = write_grid(text)
    assert main(["plan", path]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith(f"error: {path}: "), err
    assert key_path in err and allowed in err, err
    assert "Traceback" not in err


def test_missing_file(tmp_path, capsys):
    assert main(["plan", str(tmp_path / "nope.yaml")]) == 2
    assert "no such grid file" in capsys.readouterr().err


def test_console_command_prints_no_traceback(write_grid):
    path = write_grid(BASE.replace("epochs: 2", "epochs: [2]"))
    out = subprocess.run([sys.executable, "-m", "harness.cli", "plan", path],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    assert f"{path}: base.train.epochs" in out.stderr
