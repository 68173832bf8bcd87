import shutil

import numpy as np
import pytest
import soundfile as sf

from harness.cli import main
from harness.data import CorpusNotFoundError, EmptySplitError, PreparedCorpus, prepare_corpus

WORDS = ["你好", "世界", "今天", "天气", "很好", "我们", "学习", "语音"]


def _fake_aishell(root, per_split=(12, 3, 3)):
    """Aishell-1's layout with tones for audio (the pipeline, not the language, is under test)."""
    rng = np.random.default_rng(0)
    lines = []
    n = 0
    for part, count in zip(("train", "dev", "test"), per_split):
        spk = {"train": "S0002", "dev": "S0724", "test": "S0764"}[part]
        folder = root / "data_aishell" / "wav" / part / spk
        folder.mkdir(parents=True)
        for _ in range(count):
            utt = f"BAC009{spk}W{n:04d}"
            n += 1
            t = np.arange(16000) / 16000
            audio = 0.2 * np.sin(2 * np.pi * rng.uniform(150, 400) * t) + 0.01 * rng.standard_normal(16000)
            sf.write(folder / f"{utt}.wav", audio.astype(np.float32), 16000)
            lines.append(f"{utt} {' '.join(rng.choice(WORDS, 3))}\n")
    (root / "data_aishell" / "transcript").mkdir(parents=True)
    (root / "data_aishell" / "transcript" / "aishell_transcript_v0.8.txt").write_text("".join(lines), encoding="utf-8")


def test_aishell_uses_characters(tmp_path):
    _fake_aishell(tmp_path / "aishell")
    p = prepare_corpus("aishell", tmp_path / "out", tmp_path / "aishell", num_jobs=1, progress=False)
    assert p.unit == "char" and set(p.splits) == {"train", "dev", "test"}
    assert p.train_split == "train" and p.test_splits == ["test"]
    texts = [c.supervisions[0].text for c in p.cuts("dev")]
    assert texts and all(" " not in t for t in texts)
    tok = p.tokenizer()
    chars = {c for w in WORDS for c in w}
    assert chars <= {tok.piece(i) for i in range(tok.vocab_size)}
    assert tok.decode(tok.encode(texts[:1])[0]) == texts[0]


def test_aishell_errors(tmp_path):
    with pytest.raises(CorpusNotFoundError, match="no transcript file"):
        (tmp_path / "empty").mkdir()
        prepare_corpus("aishell", tmp_path / "out", tmp_path / "empty", progress=False)
    _fake_aishell(tmp_path / "a")
    shutil.rmtree(tmp_path / "a" / "data_aishell" / "wav" / "test" / "S0764")
    (tmp_path / "a" / "data_aishell" / "wav" / "test" / "S0764").mkdir()
    with pytest.raises(EmptySplitError, match="test"):
        prepare_corpus("aishell", tmp_path / "out2", tmp_path / "a", progress=False)


def test_librispeech_960_combines_the_three_training_parts(tiny_librispeech, tmp_path):
    src = tmp_path / "LibriSpeech"
    shutil.copytree(tiny_librispeech[0], src)
    for part in ("train-clean-360", "train-other-500"):
        shutil.copytree(src / "train-clean-100", src / part)
    p = prepare_corpus("librispeech", tmp_path / "out", src, num_jobs=1, progress=False)
    assert p.train_split == "train-960"
    n = len(list(p.cuts("train-clean-100")))
    assert len(list(p.cuts("train-960"))) == 3 * n
    q = prepare_corpus("librispeech", tmp_path / "out100", src, train_set="100", num_jobs=1, progress=False)
    assert q.train_split == "train-clean-100" and "train-clean-360" not in q.splits


def test_cli_prepare_and_load(tmp_path, capsys):
    out = tmp_path / "syn"
    rc = main(["data", "prepare", "--corpus", "synthetic", "--tier", "tiny", "--seed", "5",
               "--num-jobs", "1", "--out", str(out), "--quiet"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "test_held_out" in printed and "bpe model" in printed
    p = PreparedCorpus.load(out)
    assert p.info["options"]["seed"] == 5 and p.info["tier"]["name"] == "tiny"


@pytest.mark.parametrize("argv, message", [
    (["--corpus", "librispeech"], "needs --src"),
    (["--corpus", "librispeech", "--src", "/nonexistent/LibriSpeech"], "does not exist"),
    (["--corpus", "aishell", "--src", ".", "--tier", "easy"], "synthetic only"),
    (["--corpus", "synthetic", "--hours", "-2"], "error: harness data prepare: argument --hours: must be > 0"),
])
def test_cli_errors_are_named(tmp_path, capsys, argv, message):
    rc = main(["data", "prepare", "--out", str(tmp_path / "o"), "--quiet", *argv])
    assert rc == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_cli_default_out_is_data_corpus(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["data", "prepare", "--corpus", "synthetic", "--tier", "tiny", "--num-jobs", "1",
                 "--quiet"]) == 0
    assert PreparedCorpus.load(tmp_path / "data" / "synthetic").corpus == "synthetic"


def test_cli_writes_librispeech_layout(tmp_path, capsys):
    assert main(["data", "write-librispeech", "--tier", "tiny", "--num-jobs", "1",
                 "--out", str(tmp_path / "ls")]) == 0
    trans = sorted((tmp_path / "ls" / "test-other").rglob("*.trans.txt"))
    flacs = sorted((tmp_path / "ls" / "test-other").rglob("*.flac"))
    assert trans and len(flacs) == sum(len(t.read_text().splitlines()) for t in trans)
    assert sf.info(flacs[0]).samplerate == 16000
