"""An interrupted preparation leaves nothing a later step would read, and a rerun completes."""
import pytest

import harness.data.features as features
from harness.data import prepare_corpus


def test_interrupted_features_then_rerun(tmp_path, monkeypatch):
    real = features._compute_chunk
    calls = {"n": 0}

    def flaky(args):
        calls["n"] += 1
        if calls["n"] == 2:  # dies while computing the second split's features
            raise KeyboardInterrupt
        return real(args)

    monkeypatch.setattr(features, "_compute_chunk", flaky)
    out = tmp_path / "c"
    with pytest.raises(KeyboardInterrupt):
        prepare_corpus("synthetic", out, tier="tiny", num_jobs=1, progress=False)
    done = sorted(p.name for p in (out / "fbank").glob("*_cuts.jsonl.gz"))
    assert done == ["train_cuts.jsonl.gz"]  # only the finished split has a manifest
    assert not (out / "prepared.json").exists() and not list(out.rglob(".tmp-*"))
    train_mtime = (out / "fbank" / "train_cuts.jsonl.gz").stat().st_mtime_ns

    monkeypatch.setattr(features, "_compute_chunk", real)
    import subprocess

    dead = subprocess.Popen(["true"])
    dead.wait()
    (out / "fbank" / f".tmp-{dead.pid}-stale").write_text("left by a killed process")
    p = prepare_corpus("synthetic", out, tier="tiny", num_jobs=1, progress=False)
    assert (out / "fbank" / "train_cuts.jsonl.gz").stat().st_mtime_ns == train_mtime  # skipped
    assert all(c.has_features for c in p.cuts("dev"))
    assert not list(out.rglob(".tmp-*"))
