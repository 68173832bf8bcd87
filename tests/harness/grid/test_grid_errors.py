"""Malformed grid files: each gives one clear line (file, key path, what is allowed), no traceback."""
import subprocess
import sys

import pytest

from harness.cli import main

from support.gridtext import BASE

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
    # checks of harness.grid.validate: what only the code using a key knows
    "unknown decoding method": (BASE + "  decode: {methods: [viterbi]}\n", "base.decode.methods",
                                "unknown decoding method 'viterbi'; allowed: greedy_search"),
    "transducer method on a CTC cell": (BASE + "  decode: {methods: [modified_beam_search]}\n",
                                        "base.decode.methods",
                                        "cell 'base' (objective ctc) has no decoding method for its heads"),
    "method no cell can use": (BASE + "  decode: {methods: [ctc_greedy_search, greedy_search]}\n",
                               "base.decode.methods", "'greedy_search' needs the transducer head(s) and "
                                                      "applies to no cell"),
    "CTC/AED rescoring on a CTC cell": (BASE + "  decode: {methods: [attention_rescoring]}\n",
                                        "base.decode.methods", "allowed for ctc: ctc_greedy_search"),
    "axis row leaves a cell without a method": (
        BASE + "axes:\n  o:\n    - {name: t, set: {objective: transducer, decode.methods: [ctc_greedy_search]}}\n",
        "axes.o[0].set: decode.methods", "cell 't' (objective transducer) has no decoding method"),
    "data option typo": (BASE.replace("max_duration: 40", "max_duration: 40, options: {speed_pertub: false}"),
                         "base.data.options.speed_pertub", "allowed: tier, hours, voices, seed"),
    "unknown tier": (BASE.replace("max_duration: 40", "max_duration: 40, options: {tier: tinyy}"),
                     "base.data.options.tier", "allowed: tiny, easy, standard, hard"),
    "tier on LibriSpeech": (BASE.replace("corpus: synthetic", "corpus: librispeech").replace(
        "max_duration: 40", "max_duration: 40, src_dir: DATA_LS, options: {tier: easy}"),
        "base.data.options.tier", "applies to corpus 'synthetic' only"),
    "oov_chars on the synthetic corpus": (
        BASE.replace("max_duration: 40", "max_duration: 40, options: {oov_chars: reject}"),
        "base.data.options.oov_chars", "applies to corpus 'librispeech', 'lhotse' or 'kaldi' only"),
    "data option of the wrong type": (
        BASE.replace("max_duration: 40", "max_duration: 40, options: {vocab_size: many}"),
        "base.data.options.vocab_size", "integer"),
    "synthetic hours out of range": (
        BASE.replace("max_duration: 40", "max_duration: 40, options: {hours: -1}"),
        "base.data.options", "hours=-1 must be > 0"),
    "synthetic voices out of range": (
        BASE.replace("max_duration: 40", "max_duration: 40, options: {voices: 40}"),
        "base.data.options", "voices=40 must be 1-"),
    "unknown LibriSpeech train_set": (
        BASE.replace("corpus: synthetic", "corpus: librispeech").replace(
            "max_duration: 40", "max_duration: 40, src_dir: DATA_LS, options: {train_set: '50'}"),
        "base.data.options", "train_set='50'; allowed: auto, 100, 960"),
    "src_dir on the synthetic corpus": (BASE.replace("max_duration: 40", "max_duration: 40, src_dir: /tmp"),
                                        "base.data.src_dir", "takes no source directory"),
    "LibriSpeech src_dir missing": (BASE.replace("corpus: synthetic", "corpus: librispeech").replace(
        "max_duration: 40", "max_duration: 40, src_dir: /nonexistent/LibriSpeech"),
        "base.data.src_dir", "no such directory '/nonexistent/LibriSpeech'"),
    "Aishell without src_dir": (BASE.replace("corpus: synthetic", "corpus: aishell"),
                                "base.data.src_dir", "required for corpus 'aishell'"),
    "LibriSpeech src_dir without its parts": (
        BASE.replace("corpus: synthetic", "corpus: librispeech").replace(
            "max_duration: 40", "max_duration: 40, src_dir: DATA_SRC"),
        "base.data.src_dir", "lacks train-clean-100, dev-clean, test-clean, test-other"),
    "optimizer option typo": (BASE.replace("objective: ctc", "objective: ctc\n  optimizer: {options: {betaz: 1}}"),
                              "base.optimizer.options", "allowed: betas, eta"),
    "Adam option on ScaledAdam": (
        BASE.replace("objective: ctc", "objective: ctc\n  optimizer: {options: {amsgrad: true}}"),
        "base.optimizer.options", "unknown argument(s) ['amsgrad']"),
    "schedule option typo": (
        BASE.replace("objective: ctc", "objective: ctc\n  optimizer: {schedule_options: {lr_batchs: 3}}"),
        "base.optimizer.schedule_options", "allowed: lr_batches, lr_epochs, warmup_batches, warmup_start"),
    "Eden option on the Noam schedule": (
        BASE.replace("objective: ctc", "objective: ctc\n  optimizer: {schedule: noam, schedule_options: "
                                       "{lr_epochs: 3}}"),
        "base.optimizer.schedule_options", "allowed: d_model, warmup"),
    "negative schedule constant": (
        BASE.replace("objective: ctc", "objective: ctc\n  optimizer: {schedule_options: {lr_batches: -5}}"),
        "base.optimizer.schedule_options", "lr_batches"),
    "unknown optimizer": (BASE.replace("objective: ctc", "objective: ctc\n  optimizer: {name: sgd}"),
                          "base.optimizer.name", "'scaled_adam'"),
    "zero learning rate": (BASE.replace("objective: ctc", "objective: ctc\n  optimizer: {lr: 0}"),
                           "base.optimizer.lr", "greater than 0"),
    "loss key typo": (BASE.replace("objective: ctc", "objective: ctc\n  loss: {prune_rang: 3}"),
                      "base.loss.prune_rang", "allowed keys here: prune_range"),
    "loss smoothing over 1": (BASE.replace("objective: ctc", "objective: ctc\n  loss: {lm_scale: 0.8, am_scale: 0.5}"),
                              "base.loss", "lm_scale + am_scale must be <= 1"),
    "unknown RNN-T backend": (BASE.replace("objective: ctc", "objective: ctc\n  loss: {rnnt_backend: cuda}"),
                              "base.loss.rnnt_backend", "'torch'"),
    "attention head alone": (BASE.replace("objective: ctc", "objective: [attention]"),
                             "base.objective", "unsupported head combination"),
    "ablation sets an unknown tier": (ABL + "  - {name: a, set: {data.options.tier: tinyy}}\n",
                                      "ablations[0].set: data.options.tier", "allowed: tiny, easy"),
    "ablation sets a bad loss key": (ABL + "  - {name: a, set: {loss.prune_rang: 3}}\n",
                                     "ablations[0].set: loss.prune_rang", "allowed keys here: prune_range"),
    "zero beam": (BASE + "  decode: {beam: 0}\n", "base.decode.beam", "greater than 0"),
    "data options not a mapping": (BASE.replace("max_duration: 40", "max_duration: 40, options: [tiny]"),
                                   "base.data.options", "dictionary"),
    "empty file": ("", "(top level)", "must be a mapping"),
    "test_sets not a list": (BASE.replace("max_duration: 40", "max_duration: 40, test_sets: test"),
                             "base.data.test_sets", "list"),
    "top level is a list": ("- base\n", "(top level)", "must be a mapping"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_malformed_grid_gives_one_clear_line(case, write_grid, capsys, tmp_path):
    text, key_path, allowed = CASES[case]
    path = write_grid(text.replace("DATA_SRC", str(tmp_path / "empty")).replace("DATA_LS", str(tmp_path / "ls")))
    (tmp_path / "empty").mkdir(exist_ok=True)
    for part in ("train-clean-100", "dev-clean", "test-clean", "test-other"):  # a LibriSpeech layout
        (tmp_path / "ls" / part).mkdir(parents=True, exist_ok=True)
    assert main(["plan", path, "--no-flops"]) == 2
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
