"""What LibriSpeech-layout input holds, caught or noted before training: other
sample rates (resampled), characters outside the alphabet (reported or
refused), dropped test utterances (refused unless allowed), all listed in
changes.jsonl. Real files on disk: the tiny synthetic corpus in LibriSpeech's
layout, with FLACs rewritten at other rates and transcripts rewritten."""
from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest
import soundfile as sf

from harness.cli import main
from harness.data import DataError, prepare_corpus
from harness.data.transcripts import parse_transcript_line

TONE_HZ = 440.0


def _copy(root, tmp_path):
    dst = tmp_path / "LibriSpeech"
    shutil.copytree(root, dst)
    return dst


def _flac(src, part, index=0):
    return sorted((src / part).rglob("*.flac"))[index]


def _write_tone(path, rate, seconds=1.5):
    t = np.arange(int(seconds * rate)) / rate
    sf.write(path, (0.3 * np.sin(2 * np.pi * TONE_HZ * t)).astype(np.float32), rate, format="FLAC")
    return seconds


def _set_transcript(src, utt, text):
    """Replace utterance ``utt``'s line in its *.trans.txt by ``utt text`` (raw)."""
    spk, chap, _ = utt.split("-")
    trans = next((src).rglob(f"{spk}-{chap}.trans.txt"))
    lines = [f"{utt}{text}" if parse_transcript_line(l)[0] == utt else l
             for l in trans.read_text(encoding="utf-8").splitlines()]
    trans.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _changes(out):
    return [json.loads(l) for l in (out / "changes.jsonl").read_text(encoding="utf-8").splitlines()]


def _prepare(src, out, **kw):
    return prepare_corpus("librispeech", out, src, num_jobs=1, progress=False, **kw)


def test_other_sample_rates_are_resampled_with_a_note(tiny_librispeech, tmp_path):
    src = _copy(tiny_librispeech[0], tmp_path)
    rewritten = {"train-clean-100": 8000, "dev-clean": 22050, "test-clean": 44100}
    flacs = {part: _flac(src, part) for part in rewritten}
    seconds = {part: _write_tone(flacs[part], rate) for part, rate in rewritten.items()}
    out = tmp_path / "out"
    with pytest.warns(UserWarning) as record:
        prepared = _prepare(src, out)
    notes = [str(w.message) for w in record if "resampled" in str(w.message)]
    assert notes == [
        f"librispeech {part}: 1 of {7 if part != 'train-clean-100' else 25} recordings resampled to 16000 Hz "
        f"(1 at {rate} Hz; e.g. {flacs[part].resolve()})" for part, rate in rewritten.items()]
    for part, rate in rewritten.items():
        cut = next(c for c in prepared.cuts(part) if c.id == flacs[part].stem)     # kept, not dropped
        assert cut.recording.sampling_rate == 16000 and cut.has_features
        audio = cut.load_audio()[0]
        assert abs(len(audio) - seconds[part] * 16000) <= 1
        spectrum = np.abs(np.fft.rfft(audio))
        assert np.fft.rfftfreq(len(audio), 1 / 16000)[spectrum.argmax()] == pytest.approx(TONE_HZ, abs=1.0)
        assert np.sqrt(np.mean(audio ** 2)) == pytest.approx(0.3 / np.sqrt(2), rel=0.02)
        assert cut.num_frames == pytest.approx(seconds[part] * 100, abs=2)
    # the speed-perturbed copies of the resampled training utterance are there too
    train_ids = {c.id for c in prepared.cuts("train-clean-100")}
    assert {f"{flacs['train-clean-100'].stem}_sp0.9", f"{flacs['train-clean-100'].stem}_sp1.1"} <= train_ids
    entries = _changes(out)
    assert sorted((e["split"], e["id"], e["change"], e["reason"]) for e in entries) == sorted(
        (part, flacs[part].stem, "resampled", f"{rate} Hz -> 16000 Hz") for part, rate in rewritten.items())
    assert prepared.info["changes"] == {"dropped": 0, "resampled": 3, "outside_alphabet": 0}


def test_characters_outside_the_alphabet_are_reported(tiny_librispeech, tmp_path):
    src = _copy(tiny_librispeech[0], tmp_path)
    ids = [_flac(src, "train-clean-100", i).stem for i in range(3)]
    _set_transcript(src, ids[0], " \t NAÏVE CAFÉ  ")          # diacritics; spaces around as lhotse strips
    _set_transcript(src, ids[1], " ROOM 101")
    _set_transcript(src, ids[2], " 你好 WORLD")
    out = tmp_path / "out"
    with pytest.warns(UserWarning, match="outside the LibriSpeech alphabet") as record:
        prepared = _prepare(src, out)
    [msg] = [str(w.message) for w in record if "alphabet" in str(w.message)]
    assert msg == (
        "librispeech train-clean-100: 3 of 25 transcripts hold characters outside the LibriSpeech "
        "alphabet (A-Z, apostrophe, space): '1' (DIGIT ONE) x2, 'Ï' (LATIN CAPITAL LETTER I WITH DIAERESIS) x1, "
        "'É' (LATIN CAPITAL LETTER E WITH ACUTE) x1, '0' (DIGIT ZERO) x1, '你' (CJK UNIFIED IDEOGRAPH-4F60) x1, "
        "'好' (CJK UNIFIED IDEOGRAPH-597D) x1; "
        f'e.g. {ids[0]} "NAÏVE CAFÉ"; {ids[1]} "ROOM 101"; {ids[2]} "你好 WORLD"; '
        "kept (--oov-chars reject refuses them)")
    texts = {c.supervisions[0].id: c.supervisions[0].text for c in prepared.cuts("train-clean-100")}
    assert [texts[i] for i in ids] == ["NAÏVE CAFÉ", "ROOM 101", "你好 WORLD"]      # as lhotse's recipe
    flagged = [e for e in _changes(out) if e["change"] == "outside_alphabet"]
    assert [(e["id"], e["reason"]) for e in flagged] == [
        (ids[0], "'ÏÉ' in 'NAÏVE CAFÉ'"), (ids[1], "'10' in 'ROOM 101'"), (ids[2], "'你好' in '你好 WORLD'")]
    # once prepared, asking to reject is refused (the policy is checked on every call)
    with pytest.raises(DataError, match=r"prepared with 3 transcripts holding characters outside"):
        _prepare(src, out, oov_chars="reject")


def test_reject_refuses_characters_outside_the_alphabet(tiny_librispeech, tmp_path, capsys):
    src = _copy(tiny_librispeech[0], tmp_path)
    utt = _flac(src, "test-other").stem
    _set_transcript(src, utt, " naive")
    out = tmp_path / "out"
    code = main(["data", "prepare", "--corpus", "librispeech", "--src", str(src), "--out", str(out),
                 "--oov-chars", "reject", "--quiet", "--num-jobs", "1"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err[-1] == (
        f"error: librispeech test-other: 1 of 7 transcripts hold characters outside "
        f"the LibriSpeech alphabet (A-Z, apostrophe, space): 'n' (LATIN SMALL LETTER N) x1, "
        f"'a' (LATIN SMALL LETTER A) x1, 'i' (LATIN SMALL LETTER I) x1, 'v' (LATIN SMALL LETTER V) x1, "
        f"'e' (LATIN SMALL LETTER E) x1; e.g. {utt} \"naive\"; allowed: the LibriSpeech alphabet "
        f"(A-Z, apostrophe, space) (--oov-chars report keeps them); each is listed in {out.resolve()}/changes.jsonl")
    assert not (out / "manifests" / "test-other_supervisions.jsonl.gz").exists()
    assert not list(out.rglob("*_cuts.jsonl.gz"))           # refused before any feature was computed


def test_a_test_set_that_loses_an_utterance_fails_unless_allowed(tiny_librispeech, tmp_path, capsys):
    src = _copy(tiny_librispeech[0], tmp_path)
    flac = _flac(src, "test-other", 2)
    flac.write_bytes(b"not audio")
    out = tmp_path / "out"
    argv = ["data", "prepare", "--corpus", "librispeech", "--src", str(src), "--out", str(out), "--quiet",
            "--num-jobs", "1"]
    with pytest.warns(UserWarning, match=f"skipping unreadable audio file {re.escape(str(flac))}"):
        code = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert re.fullmatch(
        rf"error: librispeech test split test-other loses 1 of 7 utterances "
        rf"\(e\.g\. {flac.stem}: unreadable audio: LibsndfileError: .*\); a test set must keep every "
        rf"utterance: fix or remove the files, or allow it with --allow-dropped \(data\.allow_dropped: true\); "
        rf"each is listed in {re.escape(str(out.resolve()))}/changes\.jsonl", err[-1])
    assert not (out / "manifests" / "test-other_supervisions.jsonl.gz").exists()
    # allowed: prepared without it, a warning and the summary line say so
    with pytest.warns(UserWarning, match="test split test-other loses 1 utterances .* scored on the rest"):
        assert main(argv + ["--allow-dropped"]) == 0
    printed = capsys.readouterr().out
    assert f"utterances: 1 dropped (test-other 1); each listed in {out.resolve()}/changes.jsonl" in printed
    assert [(e["split"], e["id"], e["change"]) for e in _changes(out)] == [("test-other", flac.stem, "dropped")]
    # the prepared folder keeps its record: loading it without the permission fails again
    with pytest.raises(DataError, match=f"test split test-other loses 1 utterances .*{flac.stem}"):
        _prepare(src, out)


def test_training_drops_are_noted_and_listed(tiny_librispeech, tmp_path, capsys):
    src = _copy(tiny_librispeech[0], tmp_path)
    bad = _flac(src, "train-clean-100", 0)
    bad.write_bytes(b"")
    empty = _flac(src, "train-clean-100", 1).stem
    _set_transcript(src, empty, "   ")
    out = tmp_path / "out"
    with pytest.warns(UserWarning) as record:
        assert main(["data", "prepare", "--corpus", "librispeech", "--src", str(src), "--out", str(out),
                     "--quiet", "--num-jobs", "1"]) == 0
    msgs = [str(w.message) for w in record]
    assert any(m.startswith(f"skipping unreadable audio file {bad}: LibsndfileError") for m in msgs)
    assert f"skipping {empty}: {next(src.rglob(empty.rsplit('-', 1)[0] + '.trans.txt'))}:2 has an utterance " \
           "id and no transcript" in msgs
    assert "utterances: 2 dropped (train-clean-100 2)" in capsys.readouterr().out
    entries = {e["id"]: e for e in _changes(out)}
    assert set(entries) == {bad.stem, empty}
    assert entries[empty]["reason"].startswith("empty transcript")
    cut_ids = {c.id for c in prepare_corpus("librispeech", out, src, progress=False).cuts("train-clean-100")}
    assert bad.stem not in cut_ids and empty not in cut_ids and len(cut_ids) == 3 * 23


def test_transcript_that_is_not_utf8_is_named(tiny_librispeech, tmp_path):
    src = _copy(tiny_librispeech[0], tmp_path)
    trans = sorted((src / "dev-clean").rglob("*.trans.txt"))[0]
    lines = trans.read_bytes().splitlines()
    lines[1] += " CAF\xc9".encode("latin-1")
    trans.write_bytes(b"\n".join(lines) + b"\n")
    with pytest.raises(DataError, match=rf"^{re.escape(str(trans))}:2: transcript is not UTF-8 "
                                        r"\(invalid continuation byte at byte \d+\); allowed: UTF-8 text$"):
        _prepare(src, tmp_path / "out")


def test_oov_chars_policy_is_checked(tmp_path, tiny_librispeech):
    with pytest.raises(DataError, match="oov_chars='ignore'; allowed: report, reject"):
        _prepare(tiny_librispeech[0], tmp_path / "out", oov_chars="ignore")
