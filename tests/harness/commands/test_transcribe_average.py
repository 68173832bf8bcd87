"""harness transcribe / average / --version, and --epoch/--avg on the export commands, on a
trained tiny cell and real audio files written with soundfile."""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from harness.cli import main
from harness.commands.model_source import Choice, load_model
from harness.evaluate.model_average import averaged_weights

pytestmark = pytest.mark.usefixtures("one_thread")


def corpus_cut(cell: Path, n: int = 0):
    """A test cut of the cell's corpus (its audio file, transcript and stored features)."""
    from harness.data import PreparedCorpus
    from harness.evaluate.checkpoint import load

    cfg = load(cell / "checkpoints" / "epoch-2.pt")["config"]
    prepared = PreparedCorpus.load(cfg["data"]["dir"])
    cuts = list(prepared.cuts(prepared.test_splits[0]))
    return cuts[n]


@pytest.fixture(scope="module")
def audio(trained_cell, tmp_path_factory) -> dict[str, Path]:
    """Synthetic-corpus speech as a 16 kHz flac, the same at 8 kHz in stereo and 8 kHz mono."""
    from scipy.signal import resample_poly

    out = tmp_path_factory.mktemp("audio")
    x16, sr = sf.read(corpus_cut(trained_cell).recording.sources[0].source, dtype="float32")
    assert sr == 16000
    x8 = resample_poly(x16, 1, 2).astype(np.float32)
    y16, _ = sf.read(corpus_cut(trained_cell, 1).recording.sources[0].source, dtype="float32")
    files = {"flac16": out / "a16k.flac", "stereo8": out / "a8k-stereo.wav", "mono8": out / "a8k-mono.wav",
             "other16": out / "b16k.wav"}
    sf.write(files["flac16"], x16, 16000)
    sf.write(files["stereo8"], np.stack([x8, x8], axis=1), 8000)  # both channels the same: mixing is exact
    sf.write(files["mono8"], x8, 8000)
    sf.write(files["other16"], y16, 16000)
    return files


def lines(text: str) -> list[list[str]]:
    return [line.split("\t") for line in text.strip().splitlines()]


def test_transcribe_reads_any_rate_and_channels_and_reports_failures(trained_cell, audio, tmp_path, capsys):
    assert main(["transcribe", str(trained_cell), str(audio["stereo8"]), str(audio["flac16"])]) == 0
    cap = capsys.readouterr()
    rows = lines(cap.out)
    assert [r[0] for r in rows] == [str(audio["stereo8"]), str(audio["flac16"])]
    assert all(len(r) == 2 and r[1].strip() for r in rows), rows
    assert f"note: {audio['stereo8']}: 2 channels mixed down to mono" in cap.err
    assert f"note: {audio['stereo8']}: resampled from 8000 Hz to 16000 Hz" in cap.err
    assert str(audio["flac16"]) not in cap.err

    # mixing two equal channels changes nothing: the stereo file reads as the mono one
    assert main(["transcribe", str(trained_cell), str(audio["mono8"])]) == 0
    assert lines(capsys.readouterr().out)[0][1] == rows[0][1]

    # a missing path and a file that is not audio among good ones: one line each, the rest transcribed
    bad = tmp_path / "notes.wav"
    bad.write_text("not audio")
    missing = tmp_path / "absent.flac"
    assert main(["transcribe", str(trained_cell), str(missing), str(audio["flac16"]), str(bad),
                 str(audio["other16"])]) == 1
    cap = capsys.readouterr()
    got = lines(cap.out)
    assert [r[0] for r in got] == [str(audio["flac16"]), str(audio["other16"])]
    assert got[0][1] == rows[1][1]  # batched with another file: the same text as alone
    errors = [e for e in cap.err.splitlines() if e.startswith("error: ")]
    assert errors == [f"error: {missing}: no such file",
                      f"error: {bad}: not readable as audio: Error opening {str(bad)!r}: Format not recognised."]
    assert "Traceback" not in cap.err


def test_transcribe_features_are_trainings_and_text_is_the_models(trained_cell, audio):
    from harness.data import PreparedCorpus, Tokenizer
    from harness.decoding import decode
    from harness.evaluate.transcribe import features, load_audio, transcribe

    cut = corpus_cut(trained_cell)
    samples, notes = load_audio(audio["flac16"])
    feats = features(samples)
    stored = torch.from_numpy(cut.load_features())
    assert notes == [] and feats.shape == stored.shape
    assert (feats - stored).abs().max() < 0.05  # lilcom's storage rounding, nothing else
    model = load_model(trained_cell)
    cfg = torch.load(trained_cell / "checkpoints" / "epoch-2.pt", weights_only=False)["config"]
    tok = Tokenizer(PreparedCorpus.load(cfg["data"]["dir"]).bpe_model)
    results, totals = transcribe(model, tok.decode, [str(audio["flac16"]), str(audio["other16"])],
                                 "greedy_search", max_duration=0.01)  # one file per batch
    alone = [tok.decode(decode(model, feats[None], torch.tensor([feats.shape[0]]), "greedy_search")[0])]
    assert results[0].text == alone[0]
    together, _ = transcribe(model, tok.decode, [str(audio["flac16"]), str(audio["other16"])],
                             "greedy_search", max_duration=100)
    assert [r.text for r in together] == [r.text for r in results]
    assert totals["failed"] == 0 and totals["audio_seconds"] == pytest.approx(
        results[0].duration + results[1].duration)


@pytest.mark.skipif("MP3" not in sf.available_formats(), reason="this libsndfile has no MP3")
def test_transcribe_reads_mp3(trained_cell, audio, tmp_path, capsys):
    x, sr = sf.read(audio["flac16"], dtype="float32")
    mp3 = tmp_path / "a.mp3"
    sf.write(mp3, x, 24000, format="MP3")  # the same samples declared at 24 kHz: 2/3 of the duration
    assert main(["transcribe", str(trained_cell), str(mp3), "--json"]) == 0
    cap = capsys.readouterr()
    (f,) = json.loads(cap.out)["files"]
    assert f["notes"] == ["resampled from 24000 Hz to 16000 Hz"] and f["text"].strip()
    assert f["duration"] == pytest.approx(len(x) / 24000, abs=0.08)  # the codec pads a little


def test_transcribe_json_and_weight_choice(trained_cell, audio, tmp_path, capsys):
    assert main(["transcribe", str(trained_cell), str(audio["flac16"]), str(tmp_path / "x.wav"), "--json",
                 "--method", "ctc_greedy_search", "--epoch", "2", "--avg", "2"]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["method"] == "ctc_greedy_search" and doc["weights"].startswith("epochs 1-2 (running average")
    (f,) = doc["files"]
    info = sf.info(str(audio["flac16"]))
    assert f["path"] == str(audio["flac16"]) and f["duration"] == pytest.approx(info.duration, abs=1e-3)
    assert f["seconds"] > 0 and doc["rtfx"] > 0
    assert doc["rtfx"] == pytest.approx(doc["audio_seconds"] / doc["seconds"], rel=0.02)
    assert doc["failed"] == [{"path": str(tmp_path / "x.wav"), "error": "no such file"}]

    # `average` writes those weights; transcribing its file gives the same text
    out = tmp_path / "avg.pt"
    assert main(["average", str(trained_cell), "--epoch", "2", "--avg", "2", "--out", str(out)]) == 0
    assert "running average of steps 0-4" in capsys.readouterr().out
    saved = torch.load(out, weights_only=False)
    ref = averaged_weights(trained_cell / "checkpoints", 2, 2, True)
    assert saved["model"].keys() == ref.keys() and all(torch.equal(saved["model"][k], ref[k]) for k in ref)
    assert main(["transcribe", str(out), str(audio["flac16"]), "--json", "--method", "ctc_greedy_search"]) == 0
    assert json.loads(capsys.readouterr().out)["files"][0]["text"] == f["text"]

    # other choices give other weights; a file's epochs cannot be chosen; bad choices are one line, exit 2
    plain = load_model(trained_cell, Choice(epoch=1, avg=1, use_averaged_model=False))
    epoch1 = torch.load(trained_cell / "checkpoints" / "epoch-1.pt", weights_only=False)["model"]
    assert all(torch.equal(v, epoch1[k]) for k, v in plain.state_dict().items())
    assert main(["transcribe", str(out), str(audio["flac16"]), "--epoch", "1"]) == 2
    assert "--epoch and --avg choose among a cell's epoch checkpoints" in capsys.readouterr().err
    assert main(["average", str(trained_cell), "--epoch", "7", "--out", str(tmp_path / "b.pt")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: {trained_cell}: --epoch: no checkpoint for epoch 7; allowed: 1, 2"
    assert main(["transcribe", str(trained_cell), str(audio["flac16"]), "--avg", "0"]) == 2
    assert "--avg: must be >= 1" in capsys.readouterr().err
    assert not (tmp_path / "b.pt").exists()


def test_export_icefall_takes_the_epoch_and_averaging(trained_cell, tmp_path, capsys):
    from variants.interop import icefall_to_ours

    out = tmp_path / "pretrained.pt"
    assert main(["export-icefall", str(trained_cell), "--epoch", "1", "--avg", "1", "--no-use-averaged-model",
                 "--out", str(out)]) == 0
    theirs = torch.load(out)["model"]
    epoch1 = torch.load(trained_cell / "checkpoints" / "epoch-1.pt", weights_only=False)["model"]
    assert theirs and all(torch.equal(v, epoch1[icefall_to_ours(k)]) for k, v in theirs.items())


def test_version(capsys):
    assert main(["--version"]) == 0
    out = capsys.readouterr().out.strip()
    version = re.search(r'^version = "(.+)"', (Path(__file__).resolve().parents[3] / "pyproject.toml")
                        .read_text(), re.M).group(1)
    assert out.startswith(f"harness {version} (torch {torch.__version__}, python ")


def test_unk_is_never_emitted_by_the_transducer_searches(trained_cell, audio):
    """As in the authors' searches, ``<unk>`` extends no hypothesis: a model that prefers it
    everywhere transcribes nothing rather than '⁇' (sentencepiece's text for <unk>)."""
    from harness.data import PreparedCorpus, Tokenizer
    from harness.evaluate.transcribe import transcribe

    model = load_model(trained_cell)
    cfg = torch.load(trained_cell / "checkpoints" / "epoch-2.pt", weights_only=False)["config"]
    tok = Tokenizer(PreparedCorpus.load(cfg["data"]["dir"]).bpe_model)
    with torch.no_grad():
        model.joiner.output_linear.bias[tok.unk_id] += 50.0
    for method in ("greedy_search", "modified_beam_search"):
        plain, _ = transcribe(model, tok.decode, [str(audio["flac16"])], method)
        assert "⁇" in plain[0].text, (method, plain[0].text)  # without unk_id: <unk> all along
        silent, _ = transcribe(model, tok.decode, [str(audio["flac16"])], method, unk_id=tok.unk_id)
        assert "⁇" not in silent[0].text, (method, silent[0].text)
