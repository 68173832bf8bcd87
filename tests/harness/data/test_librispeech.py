"""The LibriSpeech recipe path, exercised on the synthetic corpus in LibriSpeech's layout."""
import shutil

import pytest

from harness.data import CorpusNotFoundError, EmptySplitError, MissingAudioError, prepare_corpus
from harness.data.synthetic.corpus import LIBRISPEECH_PARTS


def _copy(root, tmp_path):
    dst = tmp_path / "LibriSpeech"
    shutil.copytree(root, dst)
    return dst


def test_librispeech_path_gives_back_utterances_and_transcripts(tiny_librispeech, tmp_path):
    root, plan = tiny_librispeech
    prepared = prepare_corpus("librispeech", tmp_path / "out", root, num_jobs=1, progress=False)
    assert prepared.train_split == "train-clean-100" and prepared.valid_split == "dev-clean"
    assert prepared.test_splits == ["test-clean", "test-other"] and prepared.unit == "word"
    for split, part in LIBRISPEECH_PARTS.items():
        expected = {u.id: u.text for u in plan[split]}
        cuts = [c for c in prepared.cuts(part) if "_sp" not in c.id]
        got = {c.supervisions[0].id: c.supervisions[0].text for c in cuts}
        assert got == expected, part
        assert all(c.has_features for c in cuts)
        assert {c.supervisions[0].speaker for c in cuts} == {u.speaker for u in plan[split]}
    assert len(list(prepared.cuts("train-clean-100"))) == 3 * len(plan["train"])


def test_missing_corpus_directory(tmp_path):
    with pytest.raises(CorpusNotFoundError, match="nowhere"):
        prepare_corpus("librispeech", tmp_path / "out", tmp_path / "nowhere", progress=False)
    assert not (tmp_path / "out").exists()


def test_missing_part_is_named(tiny_librispeech, tmp_path):
    src = _copy(tiny_librispeech[0], tmp_path)
    shutil.rmtree(src / "test-other")
    with pytest.raises(CorpusNotFoundError, match="lacks test-other"):
        prepare_corpus("librispeech", tmp_path / "out", src, progress=False)
    assert not (tmp_path / "out").exists()


def test_transcript_line_without_audio(tiny_librispeech, tmp_path):
    src = _copy(tiny_librispeech[0], tmp_path)
    flac = sorted((src / "dev-clean").rglob("*.flac"))[0]
    flac.unlink()
    out = tmp_path / "out"
    with pytest.raises(MissingAudioError, match=f"{flac.stem}.*{flac.name}"):
        prepare_corpus("librispeech", out, src, num_jobs=1, progress=False)
    # nothing half-written: no dev-clean manifest, no cuts, no prepared corpus
    assert not list(out.glob("manifests/dev-clean*"))
    assert not list(out.rglob("*_cuts.jsonl.gz")) and not (out / "prepared.json").exists()
    assert not list(out.rglob(".tmp-*"))


def test_unreadable_test_audio_is_skipped_when_allowed(tiny_librispeech, tmp_path):
    src = _copy(tiny_librispeech[0], tmp_path)
    flac = sorted((src / "test-clean").rglob("*.flac"))[0]
    flac.write_bytes(b"this is not a flac file")
    with pytest.warns(UserWarning, match=f"unreadable audio file .*{flac.name}"):
        prepared = prepare_corpus("librispeech", tmp_path / "out", src, num_jobs=1, progress=False,
                                  allow_dropped=True)
    ids = {c.id for c in prepared.cuts("test-clean")}
    assert flac.stem not in ids and ids
    # recordings point at the real corpus, not at a temporary mirror
    rec = next(iter(prepared.cuts("test-clean"))).recording
    assert str(rec.sources[0].source).startswith(str(src.resolve()))


def test_empty_split(tiny_librispeech, tmp_path):
    src = _copy(tiny_librispeech[0], tmp_path)
    for f in (src / "dev-clean").rglob("*"):
        if f.is_file():
            f.unlink()
    with pytest.raises(EmptySplitError, match="dev-clean"):
        prepare_corpus("librispeech", tmp_path / "out", src, num_jobs=1, progress=False)
