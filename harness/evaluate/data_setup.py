"""The data a cell trains and decodes on, through ``harness.data``.

The corpus is prepared once per data directory (a file lock keeps two cells
or two processes from preparing it at the same time); every rank then loads
the same manifests and tokenizer.
"""
from __future__ import annotations

import logging
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

from harness.config import DataSection
from harness.data import PreparedCorpus, Tokenizer, prepare_corpus
from harness.locks import FileLock

log = logging.getLogger(__name__)


@dataclass
class CellData:
    prepared: Any          # harness.data.PreparedCorpus
    tokenizer: Any         # harness.data.Tokenizer
    train_cuts: Any        # lhotse CutSet
    valid_cuts: Any
    test_cuts: dict[str, Any]
    unit: str


@contextmanager
def dir_lock(path: Path) -> Iterator[None]:
    """Hold ``<path>.lock`` (waiting for another holder; one whose holder died is taken over)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(path.with_name(path.name + ".lock")):
        yield


def ensure_prepared(cfg: DataSection) -> Any:
    """Load the prepared corpus in ``cfg.dir``, preparing it first if it is missing.

    A folder prepared with other options than the cell's (``tier: tiny`` where the cell
    says ``easy``) is an error, never silently used; its recorded changes are checked
    against the cell's ``oov_chars`` / ``allow_dropped`` as ``prepare_corpus`` does."""
    out = Path(cfg.dir)
    with dir_lock(out):
        try:
            prepared = PreparedCorpus.load(out)
        except Exception:
            prepared = None
        if prepared is not None:
            _check_prepared(cfg, out)
            return prepared
        from harness.data.corpora import get_recipe

        if get_recipe(cfg.corpus).takes_src and not (cfg.src_dir and Path(cfg.src_dir).exists()):
            raise FileNotFoundError(
                f"data.dir {out} holds no prepared {cfg.corpus} corpus and data.src_dir "
                f"({cfg.src_dir!r}) does not exist: point data.src_dir at the raw corpus")
        return prepare_corpus(cfg.corpus, out, src_dir=cfg.src_dir, **cfg.options)


def _check_prepared(cfg: DataSection, out: Path) -> None:
    from harness.data.errors import DataError
    from harness.data.prepare import Checks, check_recorded_changes, prepared_mismatch

    diff = prepared_mismatch(out, cfg.corpus, cfg.src_dir, cfg.options)
    if diff:
        raise DataError(f"data.dir {out} was prepared with other options than the cell's "
                        f"{diff} (recorded, asked); use another data.dir or delete it to prepare again")
    check_recorded_changes(out, Checks(cfg.corpus, oov_chars=cfg.options.get("oov_chars", "report"),
                                       allow_dropped=cfg.options.get("allow_dropped", False)))


def load_cell_data(cfg: DataSection, ctc: bool = False, logger: Optional[logging.Logger] = None) -> CellData:
    """Prepared corpus, tokenizer and the train/valid/test cut sets of a cell; the training
    and validation cuts too short for their transcript are left out (harness.data.too_short;
    ``ctc``: the cell has a CTC head, which also needs a frame between repeated tokens;
    ``logger``: where the count goes, the cell's log)."""
    from lhotse import load_manifest

    prepared = ensure_prepared(cfg)
    tokenizer = Tokenizer(prepared.bpe_model)
    splits = prepared.splits
    train = load_manifest(splits[prepared.train_split])
    if cfg.max_train_cuts:
        train = train.subset(first=cfg.max_train_cuts)
    train = without_too_short(train, tokenizer, ctc, "training", prepared.out_dir, logger)
    valid = without_too_short(load_manifest(splits[prepared.valid_split]), tokenizer, ctc, "validation",
                              prepared.out_dir, logger)
    return CellData(prepared=prepared, tokenizer=tokenizer, train_cuts=train, valid_cuts=valid,
                    test_cuts=test_splits(prepared, cfg.test_sets), unit=getattr(prepared, "unit", "word"))


def without_too_short(cuts: Any, tokenizer: Any, ctc: bool, what: str, out: Path,
                      logger: Optional[logging.Logger] = None) -> Any:
    """``cuts`` without those too short for their transcript, as the authors' recipe filters
    them; how many is logged (``data prepare`` lists them in ``changes.jsonl``)."""
    from harness.data.too_short import reason, too_short

    short = too_short(cuts, tokenizer, ctc)
    if not short:
        return cuts
    drop = {cid for cid, *_ in short}
    cid, frames, need, _, dur = short[0]
    (logger or log).warning("left out %d of %d %s utterances too short for their transcript, as the authors' recipe "
                "does (e.g. %s: %s); listed in %s", len(drop), len(cuts), what, cid,
                reason(frames, need, dur), Path(out) / "changes.jsonl")
    return cuts.filter(lambda c: c.id not in drop).to_eager()


def test_splits(prepared: Any, names: Optional[Sequence[str]]) -> dict[str, Any]:
    """Test split name -> its cuts (``names`` None: every test split of the corpus)."""
    from lhotse import load_manifest

    splits = prepared.splits
    if names is None:
        names = list(prepared.test_splits)
    unknown = [n for n in names if n not in splits]
    if unknown:
        raise KeyError(f"test sets: unknown split(s) {unknown}; this corpus has {sorted(splits)}")
    return {n: load_manifest(splits[n]) for n in names}


def load_test_data(data_dir: str | Path, names: Optional[Sequence[str]] = None) -> CellData:
    """A prepared corpus's tokenizer and test splits only (decoding a checkpoint outside a grid)."""
    try:
        prepared = PreparedCorpus.load(Path(data_dir))
    except Exception as e:
        raise FileNotFoundError(f"{data_dir} holds no prepared corpus ({e}); prepare it with "
                                "`harness data`") from None
    return CellData(prepared=prepared, tokenizer=Tokenizer(prepared.bpe_model), train_cuts=None,
                    valid_cuts=None, test_cuts=test_splits(prepared, names),
                    unit=getattr(prepared, "unit", "word"))
