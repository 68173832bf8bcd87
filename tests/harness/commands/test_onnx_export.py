"""harness export --format onnx: one export served by onnxruntime at any batch size and length,
equal to the eager model, with the files and metadata sherpa-onnx's offline models read."""
from __future__ import annotations

import importlib.util
import json

import pytest
import torch

from harness.cli import main
from harness.commands.model_source import Choice, load_model

pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.skipif(
    not all(importlib.util.find_spec(m) for m in ("onnx", "onnxruntime")),
    reason="onnx and onnxruntime are not installed")]


def metadata(path) -> dict[str, str]:
    import onnx

    return {p.key: p.value for p in onnx.load(str(path)).metadata_props}


def test_onnx_export_serves_any_size_and_transcribes_as_eager(trained_cell, tmp_path, capsys):
    from harness.commands.model_source import find_tokenizer
    from harness.decoding import decode
    from harness.evaluate.checkpoint import load
    from harness.evaluate.transcribe import features, load_audio
    from variants.interop.export import greedy_search_parts, runner

    out = tmp_path / "onnx"
    assert main(["export", str(trained_cell), "--format", "onnx", "--out", str(out), "--frames", "100",
                 "--max-seconds", "15", "--epoch", "2", "--avg", "2"]) == 0
    printed = capsys.readouterr().out
    assert "weights of epochs 1-2 (running average" in printed
    assert sorted(p.name for p in out.iterdir()) == ["bpe.model", "ctc.onnx", "decoder.onnx", "encoder.onnx",
                                                      "export.json", "joiner.onnx", "tokens.txt"]
    info = json.loads((out / "export.json").read_text())
    for name, part in info["parts"].items():
        assert part["max_abs_diff"] <= 1e-4, (name, part)
    model = load_model(trained_cell, Choice(epoch=2, avg=2))  # the weights asked for
    tok = find_tokenizer(load(trained_cell / "checkpoints" / "epoch-2.pt")["config"])
    v = model.vocab_size
    # what sherpa-onnx reads: model_type on the encoder / CTC model, vocab and context on the decoder
    assert metadata(out / "encoder.onnx")["model_type"] == "zipformer2"
    assert metadata(out / "ctc.onnx")["model_type"] == "zipformer2_ctc"
    dec_meta = metadata(out / "decoder.onnx")
    assert (dec_meta["vocab_size"], dec_meta["context_size"]) == (str(v), str(model.decoder.context_size))
    assert (out / "tokens.txt").read_text().splitlines()[:3] == ["<blk> 0", "<sos/eos> 1", "<unk> 2"]
    assert len((out / "tokens.txt").read_text().splitlines()) == v == tok.vocab_size
    assert (out / "bpe.model").read_bytes() == tok.path.read_bytes()

    # the encoder at three lengths and two batch sizes, none of them the traced example's
    enc = runner("onnx", out / "encoder.onnx")
    ctc = runner("onnx", out / "ctc.onnx")
    g = torch.Generator().manual_seed(1)
    for batch in (1, 3):
        for frames in (57, 250, 700):
            x = torch.randn(batch, frames, 80, generator=g)
            lens = torch.randint(frames // 2, frames + 1, (batch,), generator=g)
            lens[0] = frames
            with torch.no_grad():
                ref, ref_lens = model.forward_encoder(x, lens)
                ref_lp = model.ctc_output(ref)
            got, got_lens = enc(x, lens)
            assert got.shape == ref.shape and torch.equal(got_lens, ref_lens)
            assert (got - ref).abs().max() < 1e-4, (batch, frames)
            lp, lp_lens = ctc(x, lens)
            assert torch.equal(lp_lens, ref_lens) and (lp - ref_lp).abs().max() < 1e-4

    # greedy transcripts of real speech through the exported parts equal the eager model's
    from harness.data import PreparedCorpus

    cfg = load(trained_cell / "checkpoints" / "epoch-2.pt")["config"]
    prepared = PreparedCorpus.load(cfg["data"]["dir"])
    cuts = list(prepared.cuts(prepared.test_splits[0]))[:3]
    feats = [features(load_audio(c.recording.sources[0].source)[0]) for c in cuts]
    lens = torch.tensor([f.shape[0] for f in feats])
    x = torch.nn.utils.rnn.pad_sequence(feats, batch_first=True, padding_value=-23.0)
    eager = decode(model, x, lens, "greedy_search")
    exported = greedy_search_parts(enc, runner("onnx", out / "decoder.onnx"), runner("onnx", out / "joiner.onnx"),
                                   x, lens, model.decoder.context_size, model.blank_id)
    assert exported == eager and any(eager)
    lp, lp_lens = ctc(x, lens)
    from harness.decoding import ctc_greedy_search

    assert ctc_greedy_search(lp, lp_lens, model.blank_id) == decode(model, x, lens, "ctc_greedy_search")


def test_conformer_exports_with_dynamic_axes(tmp_path, capsys):
    import variants

    torch.manual_seed(0)
    model = variants.build_model("conformer-tiny", ("transducer", "ctc")).eval()
    src = tmp_path / "conformer.pt"
    torch.save({"model": model.state_dict(), "config": {"variant": "conformer-tiny",
                                                         "objective": ["transducer", "ctc"]}}, src)
    out = tmp_path / "onnx"
    assert main(["export", str(src), "--format", "onnx", "--out", str(out), "--frames", "120",
                 "--max-seconds", "10"]) == 0
    printed = capsys.readouterr().out
    assert "note: no tokens.txt or bpe.model written" in printed  # a bare checkpoint names no corpus
    assert metadata(out / "encoder.onnx")["model_type"] == "conformer"
    info = json.loads((out / "export.json").read_text())
    assert all(p["max_abs_diff"] <= 1e-4 for p in info["parts"].values()), info["parts"]
    assert {b for b, _ in info["parts"]["encoder"]["checked_sizes"]} >= {1, 3}
    assert len({t for _, t in info["parts"]["encoder"]["checked_sizes"]}) >= 3
    from variants.interop.export import runner

    enc = runner("onnx", out / "encoder.onnx")
    for batch, frames in ((2, 64), (1, 900)):
        x = torch.randn(batch, frames, 80)
        lens = torch.full((batch,), frames)
        with torch.no_grad():
            ref, ref_lens = model.forward_encoder(x, lens)
        got, got_lens = enc(x, lens)
        assert torch.equal(got_lens, ref_lens) and (got - ref).abs().max() < 1e-4
