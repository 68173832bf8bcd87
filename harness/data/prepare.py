"""``prepare_corpus``: manifests -> cuts with fbank (speed-perturbed for training) -> BPE.

Every corpus goes through the same steps once its lhotse manifests exist.
Preparation is incremental: a step whose output exists is skipped, and every
output is written under a temporary name and renamed when complete, so an
interrupted run never leaves a file that a later step would read.

Layout of ``out_dir``::

    manifests/{split}_recordings.jsonl.gz, {split}_supervisions.jsonl.gz
    fbank/{split}_cuts.jsonl.gz, fbank/{split}_feats/   (lilcom chunks)
    lang/bpe_{N}.model
    audio/                  (synthetic corpus only, LibriSpeech layout)
    corpus.json             (what was built: options, tier, sizes)
    prepared.json           (PreparedCorpus)
    changes.jsonl           (every dropped, resampled or flagged utterance: harness.data.changes)

Checks on the way: audio at another sample rate is resampled to 16 kHz;
LibriSpeech transcripts with characters outside its alphabet are reported
(``oov_chars="report"``) or refused (``"reject"``); a test split that loses an
utterance (unreadable audio, an empty transcript, a failed decode) is an
error unless ``allow_dropped``. These two policies are checks, not part of the
prepared data's identity (``options.json``): they are applied to
``changes.jsonl`` on every call, also when the folder was prepared before.
"""
from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from harness.atomic import atomic_path, clean_stale_tmp, write_json

from .audio_check import SAMPLE_RATE, resample_recordings
from .bpe import DEFAULT_VOCAB_SIZE, train_bpe
from .changes import change, check_test_drops, load_changes, record_changes, summary_line, warn
from .errors import CorpusNotFoundError, DataError, EmptySplitError, UnknownCorpusError
from .transcripts import LIBRISPEECH_ALPHABET, LIBRISPEECH_ALPHABET_NAME, OOV_POLICIES, alphabet_message, outside_alphabet
from .quiet import lhotse_bars
from .features import compute_features, cuts_from_manifests, default_num_jobs, require_lhotse, speed_perturb

log = logging.getLogger(__name__)

CORPORA = ("synthetic", "librispeech", "aishell")
PREPARED_FILE = "prepared.json"
OPTIONS_FILE = "options.json"
#: the splits scored as test sets, which may lose no utterance unless allowed
TEST_SPLITS = {"synthetic": ("test", "test_held_out"), "librispeech": ("test-clean", "test-other"),
               "aishell": ("test",)}


@dataclass(frozen=True)
class Checks:
    """What preparation checks a corpus's utterances against (see the module docstring)."""

    corpus: str
    oov_chars: str = "report"
    allow_dropped: bool = False

    @property
    def alphabet(self) -> frozenset[str] | None:
        """The transcripts' alphabet (LibriSpeech's; the others are not checked)."""
        return LIBRISPEECH_ALPHABET if self.corpus == "librispeech" else None

    def is_test(self, split: str) -> bool:
        return split in TEST_SPLITS[self.corpus]


@dataclass
class PreparedCorpus:
    """What ``prepare_corpus`` made: cut manifests with features, and the BPE model."""

    corpus: str
    out_dir: Path
    splits: dict[str, Path]
    train_split: str
    valid_split: str
    test_splits: list[str]
    bpe_model: Path
    vocab_size: int
    unit: str                      # "word" (WER) or "char" (CER)
    info: dict[str, Any] = field(default_factory=dict)

    def save(self) -> Path:
        data = asdict(self)
        data["out_dir"] = str(self.out_dir)
        data["splits"] = {k: str(v) for k, v in self.splits.items()}
        data["bpe_model"] = str(self.bpe_model)
        path = Path(self.out_dir) / PREPARED_FILE
        write_json(path, data)
        return path

    @classmethod
    def load(cls, out_dir: str | os.PathLike) -> "PreparedCorpus":
        path = Path(out_dir) / PREPARED_FILE
        if not path.is_file():
            raise FileNotFoundError(f"{out_dir} holds no prepared corpus ({PREPARED_FILE} missing); "
                                    "run `harness data prepare`")
        data = json.loads(path.read_text())
        data["out_dir"] = Path(data["out_dir"])
        data["splits"] = {k: Path(v) for k, v in data["splits"].items()}
        data["bpe_model"] = Path(data["bpe_model"])
        return cls(**data)

    def cuts(self, split: str):
        """The CutSet of ``split`` (lazily read)."""
        from lhotse import load_manifest_lazy

        if split not in self.splits:
            raise KeyError(f"no split {split!r}; this corpus has {', '.join(self.splits)}")
        return load_manifest_lazy(self.splits[split])

    def tokenizer(self):
        from .tokenizer import Tokenizer

        return Tokenizer(self.bpe_model)


# --------------------------------------------------------------------------- progress

def _bar(total: int, desc: str, enabled: bool, unit: str = "utt"):
    """A tqdm progress bar for one stage (counted in utterances by default)."""
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, disable=not enabled, leave=True, dynamic_ncols=True)


# --------------------------------------------------------------------------- manifests

def _manifest_paths(out: Path, split: str) -> tuple[Path, Path]:
    return (out / "manifests" / f"{split}_recordings.jsonl.gz",
            out / "manifests" / f"{split}_supervisions.jsonl.gz")


def _save_manifests(out: Path, split: str, recordings, supervisions, checks: Checks,
                    drops: dict[str, tuple[str, str]] | None = None) -> None:
    """Resample, check the transcripts, record the changes, then write the split's manifests."""
    if len(supervisions) == 0:
        raise EmptySplitError(f"split {split!r} has no utterances")
    drops = drops or {}
    recordings, resampled = resample_recordings(recordings, f"{checks.corpus} {split}")
    entries = [change(split, "manifests", uid, "dropped", why, src) for uid, (why, src) in drops.items()]
    entries += [change(split, "manifests", rec.id, "resampled", f"{rate} Hz -> {SAMPLE_RATE} Hz",
                       str(rec.sources[0].source)) for rec, rate in resampled]
    found = outside_alphabet(((s.id, s.text) for s in supervisions), checks.alphabet) if checks.alphabet else {}
    entries += [change(split, "manifests", uid, "outside_alphabet", f"{bad!r} in {text!r}")
                for uid, (text, bad) in found.items()]
    changes = record_changes(out, split, "manifests", entries)
    if found:
        msg = alphabet_message(checks.corpus, split, found, len(supervisions))
        if checks.oov_chars == "reject":
            raise DataError(f"{msg}; allowed: {LIBRISPEECH_ALPHABET_NAME} (--oov-chars report keeps "
                            f"them); each is listed in {out / 'changes.jsonl'}")
        warn(f"{msg}; kept (--oov-chars reject refuses them)")
    if checks.is_test(split) and not checks.allow_dropped:
        check_test_drops(changes, checks.corpus, [split], {split: len(supervisions) + len(drops)}, False, out)
    rec_path, sup_path = _manifest_paths(out, split)
    # supervisions last: their presence marks the split as done
    for manifest, path in ((recordings, rec_path), (supervisions, sup_path)):
        with atomic_path(path) as tmp:
            manifest.to_file(tmp)  # tmp keeps the .jsonl.gz suffix lhotse picks the format by


def _have_manifests(out: Path, split: str) -> bool:
    return all(p.is_file() for p in _manifest_paths(out, split))


def _synthetic_manifests(out: Path, opts: dict, num_jobs: int, progress: bool, checks: Checks) -> dict[str, Any]:
    from .synthetic.corpus import SPLITS, build_manifests, corpus_summary, plan_corpus, synthesize, write_transcripts
    from .synthetic.tiers import get_tier

    tier = get_tier(opts["tier"], hours=opts.get("hours"), voices=opts.get("voices"))
    seed = opts["seed"]
    plan, speakers = plan_corpus(tier, seed)
    parts = {s: s for s in SPLITS}
    root = out / "audio"
    summary_path = out / "corpus.json"
    if all(_have_manifests(out, s) for s in SPLITS) and summary_path.is_file():
        return json.loads(summary_path.read_text())
    total = sum(len(v) for v in plan.values())
    with _bar(total, "synthesize (eSpeak NG)", progress) as bar:
        lengths = synthesize(plan, root, parts, num_jobs=num_jobs, progress=bar.update)
    write_transcripts(plan, root, parts)
    for split in SPLITS:
        recs, sups = build_manifests(plan[split], root, split, lengths)
        _save_manifests(out, split, recs, sups, checks)
    summary = corpus_summary(tier, seed, plan, speakers, lengths)
    write_json(summary_path, summary)
    return summary


def _librispeech_manifests(out: Path, src: Path, opts: dict, num_jobs: int, progress: bool,
                           checks: Checks) -> dict[str, Any]:
    from .librispeech import librispeech_manifests, select_parts

    train_parts, eval_parts = select_parts(src, opts.get("train_set", "auto"))
    for part in train_parts + eval_parts:
        if not _have_manifests(out, part):
            recs, sups, drops = librispeech_manifests(src, part, num_jobs=num_jobs, progress=progress)
            _save_manifests(out, part, recs, sups, checks, drops)
    return {"corpus": "librispeech", "source": str(src), "train_parts": list(train_parts),
            "eval_parts": list(eval_parts)}


def _aishell_manifests(out: Path, src: Path, progress: bool, checks: Checks) -> dict[str, Any]:
    from .aishell import PARTS, aishell_manifests

    if not all(_have_manifests(out, p) for p in PARTS):
        for part, (recs, sups, drops) in aishell_manifests(src, progress).items():
            _save_manifests(out, part, recs, sups, checks, drops)
    return {"corpus": "aishell", "source": str(src), "parts": list(PARTS)}


# --------------------------------------------------------------------------- features

def _cuts_path(out: Path, split: str) -> Path:
    return out / "fbank" / f"{split}_cuts.jsonl.gz"


def _features(out: Path, split: str, perturb: bool, num_jobs: int, progress: bool, checks: Checks) -> Path:
    from lhotse import load_manifest

    path = _cuts_path(out, split)
    if path.is_file():
        return path
    rec_path, sup_path = _manifest_paths(out, split)
    cuts = cuts_from_manifests(load_manifest(rec_path), load_manifest(sup_path))
    if perturb:
        cuts = speed_perturb(cuts)
    total = len(cuts)
    skipped: list[dict] = []
    with _bar(total, f"fbank {split}", progress) as bar:
        cuts = compute_features(cuts, out / "fbank" / f"{split}_feats", num_jobs=num_jobs,
                                progress=bar.update,
                                skipped=lambda cut_id, why: skipped.append(
                                    change(split, "features", cut_id, "dropped", f"audio not decoded: {why}")))
    changes = record_changes(out, split, "features", skipped)
    if len(cuts) == 0:
        raise EmptySplitError(f"split {split!r}: no utterance had readable audio")
    if checks.is_test(split) and not checks.allow_dropped:
        check_test_drops(changes, checks.corpus, [split], {split: total}, False, out)
    with atomic_path(path) as tmp:
        cuts.to_file(tmp)
    return path


def _combine(out: Path, name: str, parts: list[str]) -> Path:
    """One manifest holding the cuts of several parts (LibriSpeech's 960 h)."""
    from lhotse import load_manifest_lazy

    path = _cuts_path(out, name)
    if not path.is_file():
        combined = load_manifest_lazy(_cuts_path(out, parts[0]))
        for p in parts[1:]:
            combined = combined + load_manifest_lazy(_cuts_path(out, p))
        with atomic_path(path) as tmp:
            combined.to_file(tmp)
    return path


# --------------------------------------------------------------------------- main entry

def _check_options(out: Path, opts: dict) -> None:
    """Refuse to mix outputs of different options in one folder."""
    path = out / OPTIONS_FILE
    before = recorded_options(out)
    if before is not None:
        if before != opts:
            diff = options_mismatch(before, opts)
            raise DataError(f"{out} was prepared with other options {diff} (before, now); "
                            "use another --out or delete the folder")
    else:
        write_json(path, opts)


def corpus_identity(corpus: str, src_dir: str | os.PathLike | None = None, *,
                    tier: str | None = None, hours: float | None = None, voices: int | None = None,
                    seed: int = 0, vocab_size: int = DEFAULT_VOCAB_SIZE, speed_perturb: bool = True,
                    train_set: str = "auto", oov_chars: str = "report", **_: Any) -> dict[str, Any]:
    """The options that make a prepared corpus what it is (recorded in ``options.json``),
    checked without touching the disk; what :func:`prepare_corpus` refuses, this refuses."""
    if corpus not in CORPORA:
        raise UnknownCorpusError(f"unknown corpus {corpus!r}; allowed: {', '.join(CORPORA)}")
    if oov_chars not in OOV_POLICIES:
        raise DataError(f"oov_chars={oov_chars!r}; allowed: {', '.join(OOV_POLICIES)}")
    opts: dict[str, Any] = {"corpus": corpus, "vocab_size": vocab_size, "speed_perturb": speed_perturb}
    if corpus == "synthetic":
        if src_dir is not None:
            raise DataError("the synthetic corpus is generated; it takes no source directory "
                            "(--src, data.src_dir)")
        from .synthetic.tiers import DEFAULT_TIER, get_tier

        get_tier(tier or DEFAULT_TIER, hours=hours, voices=voices)
        opts.update(tier=tier or DEFAULT_TIER, hours=hours, voices=voices, seed=seed)
        return opts
    if src_dir is None:
        raise DataError(f"corpus {corpus!r} needs --src (data.src_dir), the directory of its local copy")
    if tier is not None or hours is not None or voices is not None:
        raise DataError("--tier, --hours and --voices apply to the synthetic corpus only")
    if corpus == "librispeech":
        from .librispeech import TRAIN_SETS

        if train_set != "auto" and train_set not in TRAIN_SETS:
            raise DataError(f"train_set={train_set!r}; allowed: auto, {', '.join(TRAIN_SETS)}")
    opts.update(src=str(Path(src_dir).resolve()), train_set=train_set if corpus == "librispeech" else None)
    return opts


def recorded_options(out: str | os.PathLike) -> dict[str, Any] | None:
    """The identity options a folder was prepared with (None: not prepared yet)."""
    path = Path(out) / OPTIONS_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def options_mismatch(before: dict[str, Any], now: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """{option: (recorded, asked)} for every option that differs."""
    return {k: (before.get(k), now.get(k)) for k in sorted(set(before) | set(now))
            if before.get(k) != now.get(k)}


def prepared_mismatch(out: str | os.PathLike, corpus: str, src_dir: str | os.PathLike | None,
                      options: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """{option: (recorded, asked)} where the corpus prepared in ``out`` differs from what
    ``corpus``, ``src_dir`` and ``options`` (prepare_corpus's keywords) ask for; {} when
    they agree or ``out`` is not prepared. Without ``src_dir`` the recorded source is taken."""
    recorded = recorded_options(out)
    if recorded is None:
        return {}
    asked = corpus_identity(corpus, src_dir, **options)
    if src_dir is None:
        asked.pop("src", None)
        recorded.pop("src", None)
    return options_mismatch(recorded, asked)


def check_recorded_changes(out: Path, checks: Checks) -> list[dict]:
    """The policies applied to ``changes.jsonl`` (also for a folder prepared before)."""
    changes = load_changes(out)
    check_test_drops(changes, checks.corpus, TEST_SPLITS[checks.corpus], {}, checks.allow_dropped, out)
    flagged = [e for e in changes if e["change"] == "outside_alphabet"]
    if flagged and checks.oov_chars == "reject":
        raise DataError(f"{out} was prepared with {len(flagged)} transcripts holding characters outside "
                        f"{LIBRISPEECH_ALPHABET_NAME} (e.g. {flagged[0]['id']}: {flagged[0]['reason']}); "
                        f"allowed with oov_chars=reject: none; each is listed in {out / 'changes.jsonl'}")
    return changes


def prepare_corpus(corpus: str, out_dir: str | os.PathLike, src_dir: str | os.PathLike | None = None,
                   *, tier: str | None = None, hours: float | None = None, voices: int | None = None,
                   seed: int = 0, num_jobs: int | None = None, vocab_size: int = DEFAULT_VOCAB_SIZE,
                   speed_perturb: bool = True, train_set: str = "auto",
                   oov_chars: str = "report", allow_dropped: bool = False,
                   progress: bool = True) -> PreparedCorpus:
    """Prepare ``corpus`` ("synthetic", "librispeech" or "aishell") into ``out_dir``.

    ``src_dir`` is the local copy of a real corpus (not used for "synthetic").
    Synthetic options: ``tier`` (tiny, easy (default), standard, hard),
    ``hours`` (training hours), ``voices`` (number of training voices),
    ``seed``. LibriSpeech: ``train_set`` ("100", "960" or "auto": 960 h when
    all three training parts are present), ``oov_chars`` ("report": warn
    about transcript characters outside LibriSpeech's alphabet, "reject":
    refuse them). ``vocab_size``: BPE units (500 as in the paper; fewer if the
    transcripts cannot support it). ``allow_dropped``: let a test split lose
    utterances whose audio cannot be read (else an error). Every dropped or
    changed utterance is listed in ``out_dir/changes.jsonl``.
    """
    require_lhotse()
    checks = Checks(corpus, oov_chars=oov_chars, allow_dropped=allow_dropped)
    opts = corpus_identity(corpus, src_dir, tier=tier, hours=hours, voices=voices, seed=seed,
                           vocab_size=vocab_size, speed_perturb=speed_perturb, train_set=train_set,
                           oov_chars=oov_chars)
    out = Path(out_dir).resolve()
    src = Path(opts["src"]) if opts.get("src") else None
    num_jobs = num_jobs or default_num_jobs()
    if corpus != "synthetic" and not src.is_dir():
        raise CorpusNotFoundError(f"{corpus} directory {src_dir} does not exist")
    if corpus == "librispeech":  # validate cheaply before anything is written
        from .librispeech import select_parts

        select_parts(src, train_set)
    out.mkdir(parents=True, exist_ok=True)
    for folder in (out, out / "manifests", out / "fbank", out / "lang"):
        clean_stale_tmp(folder)
    _check_options(out, opts)
    started = time.time()

    # 1. manifests
    if corpus == "synthetic":
        info = _synthetic_manifests(out, opts, num_jobs, progress, checks)
        train_parts, valid, tests, unit = ["train"], "dev", ["test", "test_held_out"], "word"
        eval_parts = ["dev", "test", "test_held_out"]
    elif corpus == "librispeech":
        from .librispeech import TEST_PARTS, VALID_PART

        with lhotse_bars(progress):
            info = _librispeech_manifests(out, src, opts, num_jobs, progress, checks)
        train_parts, eval_parts = info["train_parts"], info["eval_parts"]
        valid, tests, unit = VALID_PART, list(TEST_PARTS), "word"
    else:
        with lhotse_bars(progress):
            info = _aishell_manifests(out, src, progress, checks)
        train_parts, valid, tests, unit = ["train"], "dev", ["test"], "char"
        eval_parts = ["dev", "test"]

    # 2. features (training parts speed-perturbed)
    splits: dict[str, Path] = {}
    for part in train_parts:
        splits[part] = _features(out, part, speed_perturb, num_jobs, progress, checks)
    for part in eval_parts:
        splits[part] = _features(out, part, False, num_jobs, progress, checks)
    changes = check_recorded_changes(out, checks)
    train_split = train_parts[0]
    if len(train_parts) > 1:
        train_split = "train-960"
        splits[train_split] = _combine(out, train_split, train_parts)

    # 3. BPE on the (unperturbed) training transcripts
    bpe_path = out / "lang" / f"bpe_{vocab_size}.model" if unit == "word" else out / "lang" / "char.model"
    if not bpe_path.is_file():
        from lhotse import load_manifest_lazy

        texts = [s.text for p in train_parts for s in load_manifest_lazy(_manifest_paths(out, p)[1])]
        with _bar(1, f"sentencepiece ({unit} units)", progress, unit="model") as bar:
            train_bpe(texts, bpe_path, vocab_size=vocab_size, unit=unit)
            bar.update(1)
    from .tokenizer import Tokenizer

    actual_vocab = Tokenizer(bpe_path).vocab_size

    info = dict(info, options=opts, vocab_size=actual_vocab,
                changes={k: sum(e["change"] == k for e in changes)
                         for k in ("dropped", "resampled", "outside_alphabet")},
                speed_perturb_factors=[0.9, 1.1] if speed_perturb else [],
                fbank={"num_mel_bins": 80, "frame_length_s": 0.025, "frame_shift_s": 0.01,
                       "storage": "lilcom_chunky"})
    if corpus == "synthetic":
        write_json(out / "corpus.json", info)
    prepared = PreparedCorpus(corpus=corpus, out_dir=out, splits=splits, train_split=train_split,
                              valid_split=valid, test_splits=tests, bpe_model=bpe_path,
                              vocab_size=actual_vocab, unit=unit, info=info)
    prepared.save()
    log.info("prepared %s in %s (%.1f s); %s", corpus, out, time.time() - started, summary_line(changes, out))
    return prepared
