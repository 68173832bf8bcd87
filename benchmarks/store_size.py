"""The results store's size for per-utterance results: 5,000 utterances x 100 decodes.

Writes the store's ``utterances`` table through :class:`harness.store.ResultsStore` (one row
per decode, packed arrays) and, for comparison, the same counts as one SQLite row per
utterance; prints both sizes (after a WAL checkpoint and VACUUM) as one JSON line.

    python benchmarks/store_size.py [--utts 5000] [--decodes 100] [--speakers 40]

Utterance ids are LibriSpeech-style (``speaker-chapter-index``), reference lengths are
drawn around test-clean's mean of 20 words, and errors around a 5 % WER.
"""
from __future__ import annotations

import argparse
import json
import os
import sqlite3
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np


def corpus(n: int, speakers: int, rng: np.random.Generator) -> tuple[list[str], list[str], np.ndarray]:
    spk = rng.integers(0, speakers, n)
    chapters = rng.integers(0, 3, n)
    ids = [f"{1000 + 37 * s}-{130000 + 17 * s + c}-{i:04d}" for i, (s, c) in enumerate(zip(spk, chapters))]
    ref_len = np.maximum(1, rng.poisson(20, n))
    return ids, [i.split("-")[0] for i in ids], ref_len


def size(path: Path) -> int:
    con = sqlite3.connect(path)
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.execute("VACUUM")
    con.close()
    return sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))


def main(argv: list[str] | None = None) -> int:
    from harness.store import ResultsStore

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--utts", type=int, default=5000)
    ap.add_argument("--decodes", type=int, default=100)
    ap.add_argument("--speakers", type=int, default=40)
    args = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    ids, speakers, ref_len = corpus(args.utts, args.speakers, rng)
    decodes = []
    for d in range(args.decodes):
        subs, dels, ins = (rng.binomial(ref_len, p) for p in (0.035, 0.01, 0.005))
        decodes.append(SimpleNamespace(ids=ids, speakers=speakers, ref_len=ref_len, subs=subs, dels=dels,
                                       ins=ins, unit="word", cell=f"{d // 4:012x}", method=f"m{d % 4}"))
    out = {"utts": args.utts, "decodes": args.decodes, "speakers": args.speakers}
    with tempfile.TemporaryDirectory() as tmp:
        packed = Path(tmp) / "packed.sqlite"
        store = ResultsStore(packed)
        empty = size(packed)
        t0 = time.perf_counter()
        for u in decodes:
            store.add_utterances(u.cell, "test-clean", u.method, 50, "avg25-averaged-model-beam4", u)
        out["packed_write_s"] = round(time.perf_counter() - t0, 2)
        t0 = time.perf_counter()
        rows = store.utterances()
        out["packed_read_s"] = round(time.perf_counter() - t0, 2)
        assert len(rows) == args.decodes and int(rows[0]["ref_len"].sum()) == int(ref_len.sum())
        out["packed_bytes"] = size(packed) - empty

        flat = Path(tmp) / "flat.sqlite"
        con = sqlite3.connect(flat)
        con.execute("CREATE TABLE utterance_rows (cell_id TEXT, test_set TEXT, method TEXT, epoch INTEGER, "
                    "decode_key TEXT, utt_id TEXT, speaker TEXT, unit TEXT, ref_len INTEGER, sub INTEGER, "
                    '"del" INTEGER, ins INTEGER, PRIMARY KEY (cell_id, test_set, method, epoch, decode_key, utt_id))')
        con.commit()
        con.close()
        empty = size(flat)
        con = sqlite3.connect(flat)
        for u in decodes:
            con.executemany("INSERT INTO utterance_rows VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                            [(u.cell, "test-clean", u.method, 50, "avg25-averaged-model-beam4", i, s, "word",
                              int(r), int(a), int(b), int(c))
                             for i, s, r, a, b, c in zip(ids, speakers, ref_len, u.subs, u.dels, u.ins)])
        con.commit()
        con.close()
        out["row_per_utterance_bytes"] = size(flat) - empty
    out["packed_mb"] = round(out["packed_bytes"] / 2**20, 2)
    out["row_per_utterance_mb"] = round(out["row_per_utterance_bytes"] / 2**20, 2)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    raise SystemExit(main())
