"""harness import-icefall / export-icefall / export: real files on disk, the CLI's exit codes."""
import importlib.util
import json
from pathlib import Path

import pytest
import torch

from harness.cli import main
from harness.commands.model_source import load_model
from harness.evaluate.model_average import averaged_weights
from variants.interop import icefall_to_ours

#: a tiny Zipformer-S (one layer per stack, small dims) as a checkpoint's config overrides
TINY = {"num_encoder_layers": [1] * 6, "encoder_dim": [32] * 6, "feedforward_dim": [32] * 6,
        "encoder_unmasked_dim": [16] * 6, "num_heads": [2] * 6, "heads.vocab_size": 20,
        "heads.decoder_dim": 16, "heads.joiner_dim": 16}

pytestmark = pytest.mark.usefixtures("one_thread")

MANIFEST = json.loads((Path(__file__).resolve().parents[3] / "variants" / "interop"
                       / "icefall_manifest.json").read_text())


def their_checkpoint(heads=("transducer",), seed=0) -> dict[str, torch.Tensor]:
    """Zipformer-S in the authors' layout (names and shapes from the committed manifest)."""
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for group in ("encoder", *heads):
        for template, (n, shape) in MANIFEST["scales"]["S"][group].items():
            for i in range(n):
                sd[template.format(i) if "{}" in template else template] = torch.randn(shape, generator=g)
    return sd


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    return err


def tiny_checkpoint(path: Path, objective) -> torch.nn.Module:
    """A harness checkpoint of a tiny Zipformer in the trainer's layout."""
    import variants

    overrides = dict(TINY)
    torch.manual_seed(0)
    model = variants.build_model("zipformer-s", objective if isinstance(objective, str) else tuple(objective),
                                 **overrides)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": model.state_dict(), "step": 10, "epoch": 1,
                "config": {"variant": "zipformer-s", "objective": objective, "overrides": overrides}}, path)
    return model.eval()


def test_import_writes_the_trainers_layout_and_export_gives_their_weights_back(tmp_path, capsys):
    sd = their_checkpoint()
    src = tmp_path / "epoch-30.pt"
    torch.save({"model": sd, "optimizer": None, "batch_idx_train": 888, "cur_epoch": 30, "blank_id": 0}, src)
    out = tmp_path / "run" / "checkpoints" / "epoch-30.pt"
    assert main(["import-icefall", str(src), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "zipformer-s, objective transducer, 23.29 M parameters, step 888, epoch 30" in printed
    state = torch.load(out, weights_only=False)
    # what the trainer writes and its readers need
    for key in ("model", "model_avg", "optimizer", "step", "batches", "epoch", "average_period", "config"):
        assert key in state
    assert state["config"] == {"variant": "zipformer-s", "objective": "transducer",
                               "overrides": {"heads.vocab_size": 500, "heads.blank_id": 0}}
    for k, v in sd.items():
        assert torch.equal(state["model"][icefall_to_ours(k)], v)
    # the decoder's path: the last epoch's weights as a cell decodes them
    weights = averaged_weights(out.parent, 30, avg=1, use_averaged_model=True)
    assert all(torch.equal(weights[k], state["model"][k]) for k in weights)
    model = load_model(tmp_path / "run")
    assert model.head_names == ("transducer",) and model.vocab_size == 500

    back = tmp_path / "pretrained.pt"
    assert main(["export-icefall", str(out), "--out", str(back)]) == 0
    assert "--num-encoder-layers 2,2,2,2,2,2" in capsys.readouterr().out
    theirs = torch.load(back)["model"]
    assert theirs.keys() == sd.keys() and all(torch.equal(theirs[k], sd[k]) for k in sd)


def test_import_bad_input_is_one_line_exit_2(tmp_path, capsys):
    out = str(tmp_path / "o.pt")
    assert main(["import-icefall", str(tmp_path / "absent.pt"), "--out", out]) == 2
    assert one_line_error(capsys).endswith("absent.pt: no such file")
    sd = their_checkpoint(("ctc",))
    torch.save({"model": sd}, tmp_path / "pretrained.pt")
    assert main(["import-icefall", str(tmp_path / "pretrained.pt"), "--variant", "zipformer-l", "--out", out]) == 2
    assert "variant 'zipformer-l' does not match the checkpoint: encoder.num_encoder_layers" in one_line_error(capsys)
    assert main(["import-icefall", str(tmp_path / "pretrained.pt"), "--objective", "transducer,ctc",
                 "--out", out]) == 2
    assert "missing keys (12): decoder.embedding.weight" in one_line_error(capsys)
    assert main(["import-icefall", str(tmp_path / "pretrained.pt"), "--objective", "rnnt", "--out", out]) == 2
    assert "unknown objective 'rnnt'" in one_line_error(capsys)
    assert not Path(out).exists()


def test_export_icefall_refuses_what_their_code_cannot_run(tmp_path, capsys):
    assert main(["export-icefall", str(tmp_path), "--out", str(tmp_path / "x.pt")]) == 2
    assert "no epoch-<e>.pt" in one_line_error(capsys)
    torch.save({"model": their_checkpoint(("ctc",))}, tmp_path / "their.pt")
    assert main(["export-icefall", str(tmp_path / "their.pt"), "--out", str(tmp_path / "x.pt")]) == 2
    assert "not a harness checkpoint" in one_line_error(capsys)
    import variants

    m = variants.build_model("zipformer-m-swish", "ctc", **TINY)
    torch.save({"model": m.state_dict(),
                "config": {"variant": "zipformer-m-swish", "objective": "ctc", "overrides": TINY}},
               tmp_path / "swish.pt")
    assert main(["export-icefall", str(tmp_path / "swish.pt"), "--out", str(tmp_path / "x.pt")]) == 2
    assert "encoder.activation='swish' (authors: 'swoosh')" in one_line_error(capsys)


@pytest.mark.parametrize("fmt", ["torchscript", pytest.param("onnx", marks=pytest.mark.skipif(
    not all(importlib.util.find_spec(m) for m in ("onnx", "onnxscript", "onnxruntime")),
    reason="onnx, onnxscript and onnxruntime are not installed"))])
def test_export_runs_and_matches_eager(tmp_path, capsys, fmt):
    src = tmp_path / "ckpt.pt"
    model = tiny_checkpoint(src, ["transducer", "ctc"])
    out = tmp_path / fmt
    assert main(["export", str(src), "--format", fmt, "--out", str(out), "--frames", "120", "--max-seconds", "3"]) == 0
    printed = capsys.readouterr().out
    info = json.loads((out / "export.json").read_text())
    assert set(info["parts"]) == {"encoder", "decoder", "joiner", "ctc"}
    for name, part in info["parts"].items():
        assert part["max_abs_diff"] is not None and part["max_abs_diff"] <= 1e-4, (name, part)
        assert f"{name} max |exported - eager| = " in printed
    # run the exported encoder here too: same outputs as the eager model on new lengths
    x = torch.randn(2, 150, 80)  # not the traced example's size
    lens = torch.tensor([150, 75])
    with torch.no_grad():
        ref, ref_lens = model(x, lens)
    if fmt == "torchscript":
        enc = torch.jit.load(str(out / "encoder.pt"))
        got, got_lens = enc(x, lens)
    else:
        import onnxruntime as ort

        sess = ort.InferenceSession(str(out / "encoder.onnx"), providers=["CPUExecutionProvider"])
        got, got_lens = (torch.from_numpy(a) for a in sess.run(None, {"x": x.numpy(), "x_lens": lens.numpy()}))
    assert torch.equal(got_lens, ref_lens)
    assert (got - ref).abs().max() < 1e-4


def test_export_bad_input(tmp_path, capsys):
    src = tmp_path / "ckpt.pt"
    tiny_checkpoint(src, "ctc")
    assert main(["export", str(src), "--format", "torchscript", "--out", str(tmp_path / "o"), "--frames", "0"]) == 2
    assert one_line_error(capsys) == "error: --frames: must be >= 1, got 0"
    assert main(["export", str(src), "--format", "torchscript", "--out", str(tmp_path / "o"), "--frames", "5"]) == 2
    assert "frames=5 is below Conv-Embed's minimum of 7" in one_line_error(capsys)
    assert main(["export", str(src), "--format", "tflite", "--out", str(tmp_path / "o")]) == 2
