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
from typing import Any, Optional

from pydantic import ValidationError

from harness.atomic import atomic_path, clean_stale_tmp, write_json

from .audio_check import SAMPLE_RATE, resample_recordings, set_channels
from .bpe import train_bpe
from .changes import KINDS, change, check_test_drops, load_changes, record_changes, summary_line, warn
from .corpora import get_recipe
from .errors import CorpusNotFoundError, DataError, EmptySplitError
from .recipe import Context, Recipe
from .transcripts import OOV_POLICIES, alphabet_message, outside_alphabet
from .quiet import lhotse_bars
from .features import compute_features, cuts_from_manifests, default_num_jobs, require_lhotse, speed_perturb

log = logging.getLogger(__name__)

PREPARED_FILE = "prepared.json"
OPTIONS_FILE = "options.json"
#: the change kinds counted in ``prepared.info["changes"]`` always (others when they occur)
COUNTED_CHANGES = ("dropped", "resampled", "outside_alphabet")


@dataclass(frozen=True)
class Checks:
    """What preparation checks a corpus's utterances against (see the module docstring)."""

    corpus: str
    oov_chars: str = "report"
    allow_dropped: bool = False
    #: multi-channel audio: None mixes the channels down, N keeps channel N
    channel: Optional[int] = None

    @property
    def recipe(self) -> Recipe:
        return get_recipe(self.corpus)

    @property
    def alphabet(self) -> Any:
        """The transcripts' alphabet (None: not checked)."""
        return self.recipe.alphabet

    def is_test(self, split: str) -> bool:
        return self.recipe.is_test(split)


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
    """Resample, settle the channels, check the transcripts, record the changes, then write
    the split's manifests."""
    if len(supervisions) == 0:
        raise EmptySplitError(f"split {split!r} has no utterances")
    drops = drops or {}
    label = f"{checks.corpus} {split}"
    supervisions, channels = set_channels(recordings, supervisions, checks.channel, label)
    recordings, resampled = resample_recordings(recordings, label)
    entries = [change(split, "manifests", uid, "dropped", why, src) for uid, (why, src) in drops.items()]
    entries += [change(split, "manifests", rec.id, "resampled", f"{rate} Hz -> {SAMPLE_RATE} Hz",
                       str(rec.sources[0].source)) for rec, rate in resampled]
    entries += [change(split, "manifests", sup.id, kind, why, src) for sup, kind, why, src in channels]
    alphabet = checks.alphabet
    found = outside_alphabet(((s.id, s.text) for s in supervisions), alphabet) if alphabet is not None else {}
    entries += [change(split, "manifests", uid, "outside_alphabet", f"{bad!r} in {text!r}")
                for uid, (text, bad) in found.items()]
    changes = record_changes(out, split, "manifests", entries)
    if found:
        name = checks.recipe.alphabet_name
        msg = alphabet_message(checks.corpus, split, found, len(supervisions), name)
        if checks.oov_chars == "reject":
            raise DataError(f"{msg}; allowed: {name} (--oov-chars report keeps "
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


def corpus_options(corpus: str, options: dict[str, Any]) -> Any:
    """``options`` as ``corpus``'s options model (harness.config.corpora) validates them; an
    unknown or mistyped option is a DataError naming what is allowed."""
    recipe = get_recipe(corpus)
    try:
        return recipe.options.model_validate(options)
    except ValidationError as err:
        from harness.config.corpora import corpora_taking, corpus_option_names

        e = err.errors()[0]
        key = ".".join(map(str, e["loc"]))
        if e["type"] == "extra_forbidden":
            others = corpora_taking(key)
            if others:
                raise DataError(f"{key} applies to corpus {', '.join(others)} only, not {corpus}; "
                                f"allowed: {', '.join(corpus_option_names(corpus))}") from None
            raise DataError(f"unknown option {key!r} of corpus {corpus}; allowed: "
                            f"{', '.join(corpus_option_names(corpus))}") from None
        raise DataError(f"{key}: {e['msg']} (got {e.get('input')!r})") from None


def corpus_identity(corpus: str, src_dir: str | os.PathLike | None = None, **options: Any) -> dict[str, Any]:
    """The options that make a prepared corpus what it is (recorded in ``options.json``),
    checked without touching the disk; what :func:`prepare_corpus` refuses, this refuses.
    ``options``: the corpus's options (``progress`` and the checks are accepted, not recorded)."""
    recipe = get_recipe(corpus)
    opts = corpus_options(corpus, options)
    if getattr(opts, "oov_chars", "report") not in OOV_POLICIES:
        raise DataError(f"oov_chars={opts.oov_chars!r}; allowed: {', '.join(OOV_POLICIES)}")
    ident: dict[str, Any] = {"corpus": corpus, "vocab_size": opts.vocab_size, "speed_perturb": opts.speed_perturb}
    if not recipe.takes_src:
        ident.update(recipe.identity(Path(src_dir) if src_dir is not None else None, opts))
        return ident
    if src_dir is None:
        raise DataError(f"corpus {corpus!r} needs {recipe.src_flag} (data.src_dir), the folder of "
                        f"{recipe.source_what}")
    ident.update(recipe.identity(Path(src_dir).resolve(), opts))
    return ident


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
    recipe = checks.recipe
    tests = recipe.test_splits or sorted({e["split"] for e in changes if recipe.is_test(e["split"])})
    check_test_drops(changes, checks.corpus, tests, {}, checks.allow_dropped, out)
    flagged = [e for e in changes if e["change"] == "outside_alphabet"]
    if flagged and checks.oov_chars == "reject":
        raise DataError(f"{out} was prepared with {len(flagged)} transcripts holding characters outside "
                        f"{recipe.alphabet_name} (e.g. {flagged[0]['id']}: {flagged[0]['reason']}); "
                        f"allowed with oov_chars=reject: none; each is listed in {out / 'changes.jsonl'}")
    return changes


def _record_too_short(out: Path, splits: dict[str, Path], parts: list[str], bpe_path: Path) -> None:
    """List the training and validation cuts too short for their transcript (harness.data.too_short)."""
    from lhotse import load_manifest_lazy

    from .tokenizer import Tokenizer
    from .too_short import reason, too_short

    tokenizer = Tokenizer(bpe_path)
    for part in parts:
        cuts = load_manifest_lazy(splits[part])
        short = too_short(cuts, tokenizer)
        entries = [change(part, "filter", cid, "too_short", f"{reason(frames, need, dur)}: {text!r}")
                   for cid, frames, need, text, dur in short]
        record_changes(out, part, "filter", entries)
        if short:
            cid, frames, need, _, dur = short[0]
            warn(f"{len(short)} of {len(cuts)} {part} utterances are too short for their transcript "
                 f"(e.g. {cid}: {reason(frames, need, dur)}); training leaves them out, as the authors' "
                 f"recipe does; each is listed in {out / 'changes.jsonl'}")


def prepare_corpus(corpus: str, out_dir: str | os.PathLike, src_dir: str | os.PathLike | None = None,
                   **options: Any) -> PreparedCorpus:
    """Prepare ``corpus`` (a name of :data:`harness.data.corpora.RECIPES`) into ``out_dir``.

    ``src_dir`` is the corpus's source: a local copy of LibriSpeech or Aishell-1, a folder
    of lhotse manifests, a folder of Kaldi data directories (not used for "synthetic").
    ``options``: the corpus's options model in :mod:`harness.config.corpora`. Every corpus:
    ``vocab_size`` (BPE units, 500 as in the paper; fewer if the transcripts cannot support
    it), ``speed_perturb``, ``num_jobs``, ``allow_dropped`` (let a test split lose utterances
    whose audio cannot be read; else an error), ``progress``. Synthetic: ``tier`` (tiny,
    easy (default), standard, hard), ``hours``, ``voices``, ``seed``. LibriSpeech:
    ``train_set`` ("100", "960" or "auto": 960 h when all three training parts are
    present), ``oov_chars`` ("report": warn about transcript characters outside the
    alphabet, "reject": refuse them). lhotse and kaldi: ``oov_chars``, ``unit`` ("word":
    BPE, "char": characters), ``channel`` (None: multi-channel audio mixed down). Every
    dropped or changed utterance is listed in ``out_dir/changes.jsonl``.
    """
    require_lhotse()
    recipe = get_recipe(corpus)
    opts = corpus_options(corpus, options)
    ident = corpus_identity(corpus, src_dir, **options)
    checks = Checks(corpus, oov_chars=getattr(opts, "oov_chars", "report"), allow_dropped=opts.allow_dropped,
                    channel=getattr(opts, "channel", None))
    out = Path(out_dir).resolve()
    src = Path(ident["src"]) if ident.get("src") else None
    num_jobs = opts.num_jobs or default_num_jobs()
    progress = opts.progress
    if recipe.takes_src:
        if not src.is_dir():
            raise CorpusNotFoundError(f"{corpus} directory {src_dir} does not exist")
        recipe.check_source(src, opts, deep=True)  # before anything is written
    out.mkdir(parents=True, exist_ok=True)
    for folder in (out, out / "manifests", out / "fbank", out / "lang"):
        clean_stale_tmp(folder)
    _check_options(out, ident)
    started = time.time()

    # 1. manifests
    ctx = Context(out=out, src=src, num_jobs=num_jobs, progress=progress,
                  save=lambda split, recs, sups, drops=None: _save_manifests(out, split, recs, sups, checks, drops),
                  have=lambda split: _have_manifests(out, split),
                  bar=lambda total, desc, unit="utt": _bar(total, desc, progress, unit=unit))
    with lhotse_bars(progress):
        layout = recipe.manifests(ctx, opts)
    train_parts, eval_parts, unit = layout.train_parts, layout.eval_parts, layout.unit

    # 2. features (training parts speed-perturbed)
    splits: dict[str, Path] = {}
    for part in train_parts:
        splits[part] = _features(out, part, opts.speed_perturb, num_jobs, progress, checks)
    for part in eval_parts:
        splits[part] = _features(out, part, False, num_jobs, progress, checks)
    check_recorded_changes(out, checks)
    train_split = train_parts[0]
    if len(train_parts) > 1:
        train_split = layout.combined
        splits[train_split] = _combine(out, train_split, train_parts)

    # 3. BPE on the (unperturbed) training transcripts
    vocab_size = opts.vocab_size
    bpe_path = out / "lang" / f"bpe_{vocab_size}.model" if unit == "word" else out / "lang" / "char.model"
    if not bpe_path.is_file():
        from lhotse import load_manifest_lazy

        texts = [s.text for p in train_parts for s in load_manifest_lazy(_manifest_paths(out, p)[1])]
        with _bar(1, f"sentencepiece ({unit} units)", progress, unit="model") as bar:
            train_bpe(texts, bpe_path, vocab_size=vocab_size, unit=unit)
            bar.update(1)
    from .tokenizer import Tokenizer

    actual_vocab = Tokenizer(bpe_path).vocab_size

    # 4. utterances too short for their transcript (training leaves them out)
    if not (out / PREPARED_FILE).is_file():
        _record_too_short(out, splits, train_parts + [layout.valid], bpe_path)
    changes = load_changes(out)

    counts = {k: sum(e["change"] == k for e in changes) for k in KINDS}
    info = dict(layout.info, options=ident, vocab_size=actual_vocab,
                changes={k: n for k, n in counts.items() if k in COUNTED_CHANGES or n},
                speed_perturb_factors=[0.9, 1.1] if opts.speed_perturb else [],
                fbank={"num_mel_bins": 80, "frame_length_s": 0.025, "frame_shift_s": 0.01,
                       "storage": "lilcom_chunky"})
    recipe.finish(out, info)
    prepared = PreparedCorpus(corpus=corpus, out_dir=out, splits=splits, train_split=train_split,
                              valid_split=layout.valid, test_splits=list(layout.tests), bpe_model=bpe_path,
                              vocab_size=actual_vocab, unit=unit, info=info)
    prepared.save()
    log.info("prepared %s in %s (%.1f s); %s", corpus, out, time.time() - started, summary_line(changes, out))
    return prepared
