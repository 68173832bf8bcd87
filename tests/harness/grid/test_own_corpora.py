"""One's own corpus: lhotse manifests and Kaldi data directories, built here from the tiny
synthetic corpus's audio (some of it at 8 kHz, some stereo, one 0.1 s clip with a long
transcript), prepared with the shared checks and trained on through a grid."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from harness.cli import main
from harness.grid.cells import load_cells
from harness.store import ResultsStore

SHORT_ID = "short-0000"
SHORT_TEXT = "A CLIP FAR TOO SHORT FOR ALL THE MANY WORDS OF THIS LONG TRANSCRIPT"
STEREO_RIGHT = 0.5  # the right channel is the left at half volume: their mean is 0.75 x left


def _utterances(corpus: Path, split: str, n: int) -> list[dict]:
    from lhotse import load_manifest

    recs = load_manifest(corpus / "manifests" / f"{split}_recordings.jsonl.gz")
    sups = load_manifest(corpus / "manifests" / f"{split}_supervisions.jsonl.gz")
    return [{"id": s.id, "text": s.text, "speaker": s.speaker, "audio": recs[s.recording_id].load_audio()[0]}
            for s in list(sups)[:n]]


@pytest.fixture(scope="module")
def own_audio(tmp_path_factory, tiny_corpus):
    """{role: [utterance]}: wav files from the tiny corpus; in train the first is at 8 kHz, the
    second stereo, and a 0.1 s clip with a long transcript is added."""
    root = tmp_path_factory.mktemp("own_audio")
    out = {}
    for role, split, n in (("train", "train", 10), ("dev", "dev", 3), ("test", "test", 3)):
        utts = _utterances(tiny_corpus, split, n)
        if role == "train":
            utts.append({"id": SHORT_ID, "text": SHORT_TEXT, "speaker": "900", "audio": utts[0]["audio"][:1600]})
        for i, u in enumerate(utts):
            path = root / role / f"{u['id']}.wav"
            path.parent.mkdir(parents=True, exist_ok=True)
            x = u["audio"]
            if role == "train" and i == 0:
                sf.write(path, x[::2], 8000)  # 8 kHz (the tiny corpus's audio is band-limited speech)
            elif role == "train" and i == 1:
                sf.write(path, np.stack([x, STEREO_RIGHT * x], axis=1), 16000)
                u["stereo"] = True
            else:
                sf.write(path, x, 16000)
            u["path"] = path
        out[role] = utts
    return out


def write_lhotse(folder: Path, own_audio: dict) -> Path:
    """train as a CutSet, dev and test as RecordingSet + SupervisionSet pairs."""
    from lhotse import CutSet, Recording, RecordingSet, SupervisionSegment, SupervisionSet

    folder.mkdir(parents=True, exist_ok=True)
    for role, utts in own_audio.items():
        recs = RecordingSet.from_recordings(Recording.from_file(u["path"], recording_id=u["id"]) for u in utts)
        sups = SupervisionSet.from_segments(
            SupervisionSegment(id=u["id"], recording_id=u["id"], start=0.0, duration=recs[u["id"]].duration,
                               text=u["text"], speaker=u["speaker"]) for u in utts)
        if role == "train":
            CutSet.from_manifests(recordings=recs, supervisions=sups).to_file(folder / f"mine_cuts_{role}.jsonl.gz")
        else:
            recs.to_file(folder / f"mine_recordings_{role}.jsonl.gz")
            sups.to_file(folder / f"mine_supervisions_{role}.jsonl.gz")
    return folder


def write_kaldi(folder: Path, own_audio: dict) -> Path:
    """One Kaldi data directory per split; dev cuts its recordings with a segments file."""
    for role, utts in own_audio.items():
        d = folder / role
        d.mkdir(parents=True, exist_ok=True)
        (d / "wav.scp").write_text("".join(f"{u['id']} {u['path']}\n" for u in utts))
        (d / "text").write_text("".join(f"{u['id']} {u['text']}\n" for u in utts))
        (d / "utt2spk").write_text("".join(f"{u['id']} {u['speaker']}\n" for u in utts))
        if role == "dev":
            dur = {u["id"]: int(sf.info(str(u["path"])).duration * 1000) / 1000 for u in utts}
            (d / "segments").write_text("".join(f"{u['id']} {u['id']} 0.0 {dur[u['id']]:.3f}\n" for u in utts))
    return folder


def grid_text(tmp_path: Path, corpus: str, src: Path, data_dir: Path, options: str = "speed_perturb: false") -> str:
    text = (f"name: own-{corpus}\nstore: {tmp_path / 'runs' / 'results.sqlite'}\nrun_root: {tmp_path / 'runs'}\n"
            "base:\n  variant: zipformer-tiny\n  objective: ctc\n"
            f"  data: {{corpus: {corpus}, dir: {data_dir}, src_dir: {src}, options: {{{options}}}, "
            "max_duration: 8}\n"
            "  train: {max_steps: 3, save_every_n: 1, average_period: 1}\n"
            "  decode: {methods: [ctc_greedy_search]}\n")
    path = tmp_path / f"{corpus}.yaml"
    path.write_text(text)
    return str(path)


def _changes(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "changes.jsonl").read_text().splitlines()]


def _trained(path: str, test_sets: set[str]) -> None:
    grid, (cell,) = load_cells(path)
    row = ResultsStore(grid.spec.store).cell(cell.cell_id)
    assert row["status"] == "done" and row["step"] == 3, row
    wers = ResultsStore(grid.spec.store).rows("wers", cell_id=cell.cell_id)
    assert {w["test_set"] for w in wers} == test_sets and all(w["ref_words"] > 0 for w in wers)


def test_lhotse_manifests_train_through_a_grid(tmp_path, own_audio, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    src = write_lhotse(tmp_path / "manifests", own_audio)
    data_dir = tmp_path / "prepared"
    path = grid_text(tmp_path, "lhotse", src, data_dir)
    assert main(["plan", path, "--no-flops"]) == 0
    assert main(["run", path]) == 0  # prepares the corpus, then trains a CTC cell for 3 steps
    _trained(path, {"test"})

    changes = _changes(data_dir)
    by_kind = {}
    for e in changes:
        by_kind.setdefault(e["change"], []).append(e)
    first, stereo = own_audio["train"][0], own_audio["train"][1]
    assert [(e["split"], e["id"], e["reason"]) for e in by_kind["resampled"]] == [
        ("train", first["id"], "8000 Hz -> 16000 Hz")]
    assert [(e["split"], e["id"]) for e in by_kind["mixed_down"]] == [("train", stereo["id"])]
    # the 0.1 s clip: recorded, and left out of training (else the CTC loss would refuse it)
    assert [(e["split"], e["id"], e["stage"]) for e in by_kind["too_short"]] == [("train", SHORT_ID, "filter")]
    assert "encoder frames after subsampling" in by_kind["too_short"][0]["reason"]
    grid, (cell,) = load_cells(path)
    log = (Path(grid.spec.run_root) / cell.cell_id / "log" / "train-rank0.log").read_text()
    assert "left out 1 of 11 training utterances too short for their transcript" in log

    # the stereo clip's features are those of the mean of its channels, not of channel 0
    from lhotse import load_manifest

    from harness.data.features import fbank_extractor

    feats = load_manifest(data_dir / "fbank" / "train_cuts.jsonl.gz")[stereo["id"]].load_features()
    for scale, close in (((1 + STEREO_RIGHT) / 2, True), (1.0, False)):  # their mean; channel 0
        ref = fbank_extractor().extract((scale * stereo["audio"]).astype(np.float32), 16000)
        n = min(len(ref), len(feats))
        diff = float(np.abs(feats[:n] - ref[:n]).mean())
        assert (diff < 0.1) == close, (scale, diff)


def test_kaldi_directories_train_through_a_grid(tmp_path, own_audio, monkeypatch, capsys):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    src = write_kaldi(tmp_path / "kaldi", own_audio)
    data_dir = tmp_path / "prepared"
    assert main(["data", "prepare", "--corpus", "kaldi", "--src", str(src), "--out", str(data_dir), "--quiet",
                 "--num-jobs", "1", "--no-speed-perturb", "--unit", "char", "--channel", "1"]) == 0
    printed = capsys.readouterr().out
    assert "char error rate" in printed and "1 reduced to the chosen channel (train 1)" in printed
    kinds = {(e["change"], e["id"]) for e in _changes(data_dir)}
    assert {("resampled", own_audio["train"][0]["id"]), ("channel_picked", own_audio["train"][1]["id"]),
            ("too_short", SHORT_ID)} <= kinds
    path = grid_text(tmp_path, "kaldi", src, data_dir, "speed_perturb: false, unit: char, channel: 1")
    assert main(["run", path]) == 0
    _trained(path, {"test"})


def _one_error(capsys, argv: list[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in err, err
    return errors[0]


def test_bad_lhotse_inputs_give_one_error_line_each(tmp_path, own_audio, capsys):
    def prepare(src: Path, *more: str) -> str:
        return _one_error(capsys, ["data", "prepare", "--corpus", "lhotse", "--manifests", str(src),
                                   "--out", str(tmp_path / f"out-{src.name}"), "--quiet", "--num-jobs", "1", *more])

    assert "does not exist" in prepare(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    assert "holds no lhotse manifests" in prepare(tmp_path / "empty")
    good = write_lhotse(tmp_path / "good", own_audio)

    def variant(name: str, change) -> Path:
        import shutil

        d = tmp_path / name
        shutil.copytree(good, d)
        change(d)
        return d

    no_dev = variant("nodev", lambda d: [p.unlink() for p in d.glob("*_dev.*")])
    assert "no dev split" in prepare(no_dev)
    odd_name = variant("oddname", lambda d: (d / "mine_cuts_train.jsonl.gz").rename(d / "mine_cuts_extra.jsonl.gz"))
    assert "say neither train, dev nor test" in prepare(odd_name)
    no_kind = variant("nokind", lambda d: (d / "mine_cuts_train.jsonl.gz").rename(d / "mine_train.jsonl.gz"))
    assert "the name says no manifest kind" in prepare(no_kind)
    lone = variant("lone", lambda d: (d / "mine_supervisions_dev.jsonl.gz").unlink())
    assert "has no supervisions manifest beside it" in prepare(lone)
    own_audio_missing = variant("missing", lambda d: None)
    gone = own_audio["dev"][0]["path"]
    moved = gone.with_suffix(".away")
    gone.rename(moved)
    try:
        err = prepare(own_audio_missing)
        assert f"recording {own_audio['dev'][0]['id']} has no audio file {gone}" in err
        # plan finds it too, before anything is trained
        path = grid_text(tmp_path, "lhotse", own_audio_missing, tmp_path / "p2")
        err = _one_error(capsys, ["plan", path, "--no-flops"])
        assert "base.data.src_dir:" in err and "has no audio file" in err
    finally:
        moved.rename(gone)
    assert "applies to --corpus lhotse, kaldi only" in _one_error(
        capsys, ["data", "prepare", "--corpus", "synthetic", "--unit", "char", "--out", str(tmp_path / "o")])
    assert "--manifests applies to --corpus lhotse only" in _one_error(
        capsys, ["data", "prepare", "--corpus", "kaldi", "--manifests", str(good), "--out", str(tmp_path / "o")])
    assert "has channels [0, 1], and the option channel=5 names none of them" in prepare(good, "--channel", "5")


def test_bad_kaldi_inputs_give_one_error_line_each(tmp_path, own_audio, capsys):
    def prepare(src: Path) -> str:
        return _one_error(capsys, ["data", "prepare", "--corpus", "kaldi", "--src", str(src),
                                   "--out", str(tmp_path / f"out-{src.name}"), "--quiet", "--num-jobs", "1"])

    def variant(name: str, change) -> Path:
        d = write_kaldi(tmp_path / name, own_audio)
        change(d)
        return d

    assert "is one Kaldi data directory" in prepare(variant("one", lambda d: (d / "wav.scp").write_text("")))
    assert "without text" in prepare(variant("notext", lambda d: (d / "test" / "text").unlink()))
    wav = variant("nowav", lambda d: (d / "dev" / "wav.scp").write_text("x /nowhere/x.wav\n"))
    assert "dev/wav.scp:1: recording x has no audio file /nowhere/x.wav" in prepare(wav)
    pipe = variant("pipe", lambda d: (d / "dev" / "wav.scp").write_text("x sph2pipe -f wav x.sph |\n"))
    assert "is a command; allowed: an audio file path" in prepare(pipe)
    spk = variant("nospk", lambda d: (d / "train" / "utt2spk").write_text(""))
    assert "no speaker for utterance" in prepare(spk)


def test_empty_transcripts_and_odd_characters_are_recorded_or_refused(tmp_path, own_audio, capsys):
    src = write_kaldi(tmp_path / "kaldi", own_audio)
    test_text = src / "test" / "text"
    lines = test_text.read_text().splitlines()
    lines[0] = lines[0].split()[0]                 # an id without a transcript
    lines[1] = lines[1] + " \u00e9t\u00e9\t\x07"  # accents are letters; a tab and a bell are not
    test_text.write_text("\n".join(lines) + "\n")
    argv = ["data", "prepare", "--corpus", "kaldi", "--src", str(src), "--out", str(tmp_path / "out"), "--quiet",
            "--num-jobs", "1", "--no-speed-perturb"]
    err = _one_error(capsys, argv + ["--oov-chars", "reject"])
    assert "outside letters, digits, marks, apostrophe and space" in err and "U+0007" in err
    err = _one_error(capsys, argv)  # the empty transcript drops a test utterance: refused by default
    assert "kaldi test split test would lose 1 of 3 utterances (e.g." in err and "empty transcript" in err
    path = grid_text(tmp_path, "kaldi", src, tmp_path / "p2")  # plan finds it before anything is trained
    err = _one_error(capsys, ["plan", path, "--no-flops"])
    assert "base.data.src_dir:" in err and "would lose 1 of 3 utterances" in err
    assert main(argv + ["--allow-dropped"]) == 0
    kinds = {(e["split"], e["change"]) for e in _changes(tmp_path / "out")}
    assert {("test", "dropped"), ("test", "outside_alphabet")} <= kinds
