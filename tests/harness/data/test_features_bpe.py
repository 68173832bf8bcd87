import numpy as np
import pytest
import soundfile as sf
from lhotse import Recording, RecordingSet, SupervisionSegment, SupervisionSet

from harness.data import Tokenizer
from harness.data.bpe import train_bpe
from harness.data.features import compute_features, cuts_from_manifests, speed_perturb


def _sine_corpus(tmp_path, n=3, seconds=1.0):
    recs, sups = [], []
    for i in range(n):
        t = np.arange(int(16000 * seconds)) / 16000
        path = tmp_path / f"u{i}.flac"
        sf.write(path, (0.3 * np.sin(2 * np.pi * (200 + 100 * i) * t)).astype(np.float32), 16000)
        rec = Recording.from_file(path, recording_id=f"u{i}")
        recs.append(rec)
        sups.append(SupervisionSegment(id=f"u{i}", recording_id=f"u{i}", start=0.1, duration=0.8,
                                       text=f"TONE {i}"))
    return RecordingSet.from_recordings(recs), SupervisionSet.from_segments(sups)


def test_cuts_are_trimmed_eagerly_and_get_80_dim_fbank(tmp_path):
    cuts = cuts_from_manifests(*_sine_corpus(tmp_path))
    assert not cuts.is_lazy and len(cuts) == 3
    assert all(abs(c.duration - 0.8) < 1e-6 and c.supervisions[0].start == 0 for c in cuts)
    out = compute_features(cuts, tmp_path / "feats")
    feats = out[0].load_features()
    assert feats.shape == (80, 80)  # 0.8 s at a 10 ms shift, 80 mel bins


def test_perturb_before_features_or_fail(tmp_path):
    cuts = cuts_from_manifests(*_sine_corpus(tmp_path))
    perturbed = speed_perturb(cuts)
    assert len(perturbed) == 9
    durs = {c.id: c.duration for c in perturbed}
    assert durs["u0_sp0.9"] > durs["u0"] > durs["u0_sp1.1"]
    with_feats = compute_features(cuts, tmp_path / "feats")
    with pytest.raises(ValueError, match="perturb before computing features"):
        speed_perturb(with_feats)


def test_undecodable_audio_is_skipped_with_its_name(tmp_path):
    cuts = cuts_from_manifests(*_sine_corpus(tmp_path))
    (tmp_path / "u1.flac").write_bytes(b"garbage")
    with pytest.warns(UserWarning, match="u1.*u1.flac"):
        out = compute_features(cuts, tmp_path / "feats")
    assert sorted(c.id for c in out) == ["u0", "u2"]


def test_bpe_layout_follows_icefall(tmp_path):
    texts = ["THE CAT SAT ON THE MAT", "A DOG RAN IN THE PARK", "THE BIRD SANG"] * 20
    size = train_bpe(texts, tmp_path / "bpe.model", vocab_size=20)
    tok = Tokenizer(tmp_path / "bpe.model")
    assert size == tok.vocab_size == 20
    assert (tok.blank_id, tok.sos_id, tok.unk_id) == (0, 1, 2)
    assert [tok.piece(i) for i in range(3)] == ["<blk>", "<sos/eos>", "<unk>"]
    ids = tok.encode(["THE CAT RAN", "A BIRD"])
    assert all(0 not in seq for seq in ids)
    assert tok.decode(ids[0]) == "THE CAT RAN"
    assert tok.decode([0] + ids[1] + [1]) == "A BIRD"


def test_bpe_size_capped_by_small_text(tmp_path):
    size = train_bpe(["HELLO WORLD", "WORLD IS BIG"], tmp_path / "bpe.model", vocab_size=500)
    assert 3 < size < 500 and Tokenizer(tmp_path / "bpe.model").vocab_size == size


def test_char_units(tmp_path):
    size = train_bpe(["你好世界", "世界很大"], tmp_path / "char.model", unit="char")
    tok = Tokenizer(tmp_path / "char.model")
    assert size == tok.vocab_size
    assert {tok.piece(i) for i in range(size)} >= {"你", "好", "世", "界", "很", "大"}
    assert tok.decode(tok.encode(["大世界"])[0]) == "大世界"


def test_bad_inputs(tmp_path):
    with pytest.raises(ValueError, match="no training transcripts"):
        train_bpe(["", "  "], tmp_path / "x.model")
    with pytest.raises(ValueError, match="unit='bpe'"):
        train_bpe(["A"], tmp_path / "x.model", unit="bpe")
    with pytest.raises(FileNotFoundError, match="no sentencepiece model"):
        Tokenizer(tmp_path / "missing.model")
    with pytest.raises(TypeError, match="list of texts"):
        Tokenizer.encode(object.__new__(Tokenizer), "A STRING")
