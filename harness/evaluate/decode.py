"""Decode saved checkpoints: WER per test set and method, recorded under a decode key.

A decode never trains: it loads a cell's epoch checkpoints (averaged as the
settings say), decodes the test sets with each method, and writes

- the results store's ``wers`` rows (cell, test set, method, epoch, decode key) and, under
  the same key, each utterance's id, speaker, reference length and edit counts
  (``utterances``: what ``harness compare`` bootstraps its confidence intervals from),
- ``recogs-<set>-<method>.txt``, ``errs-<set>-<method>.txt`` and
  ``wer-summary-<set>.txt`` under ``<run dir>/decode/epoch-<E>-<averaging>/``,
- ``decode/<set>/<method>/<key>/WER`` (or CER) to the cell's TensorBoard,
- a log line naming the epochs that were averaged.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch
from torch import nn

from harness.config import Cell
from harness.config.schema import default_decode_methods
from harness.data import batch_cut_ids, batch_lengths, batch_speakers, batch_texts, make_dataloader
from harness.decoding import (DecodeSettings, ErrorStats, UtteranceErrors, available_methods, decode,
                              utterance_errors)
from harness.decoding.result_files import write_errs, write_recogs, write_wer_summary
from variants import get_spec

from .checkpoint import epoch_checkpoints
from .data_setup import CellData
from .model_average import average_epochs
from .model_setup import build_asr_model, build_cell_model


@dataclass(frozen=True)
class DecodeResult:
    """One row of a decode: what was decoded and its error rate."""

    test_set: str
    method: str
    epoch: Optional[int]
    decode_key: str
    averaged: str
    stats: ErrorStats
    #: each utterance's counts (None only for results made without them)
    utterances: Optional[UtteranceErrors] = None


def applicable_methods(methods: tuple[str, ...], model: nn.Module, objective: str,
                       log: logging.Logger) -> list[str]:
    """The methods that apply to the model's heads; an error if none does."""
    avail = list(available_methods(model))
    chosen = [m for m in methods if m in avail]
    skipped = [m for m in methods if m not in avail]
    if not chosen:
        raise ValueError(f"decode.methods {list(methods)} has no method for objective {objective}; "
                         f"available: {', '.join(avail)}")
    if skipped:
        log.info("decoding methods %s do not apply to objective %s; skipped", skipped, objective)
    return chosen


@torch.no_grad()
def decode_model(model: nn.Module, data: CellData, settings: DecodeSettings, methods: list[str],
                 device: torch.device, out_dir: Path, header: str) -> dict[tuple[str, str], UtteranceErrors]:
    """Decode ``data``'s test sets with ``methods``; write the result files into ``out_dir``.
    Per (test set, method): every utterance's edit counts (``.stats()`` the totals)."""
    model.to(device).eval()
    out: dict[tuple[str, str], UtteranceErrors] = {}
    tests = data.test_cuts
    if settings.test_sets is not None:
        unknown = [n for n in settings.test_sets if n not in tests]
        if unknown:
            raise KeyError(f"test sets: unknown {unknown}; have {sorted(tests)}")
        tests = {n: tests[n] for n in settings.test_sets}
    for test_name, cuts in tests.items():
        ids: list[str] = []
        speakers: list[str] = []
        refs: list[str] = []
        hyps: dict[str, list[str]] = {m: [] for m in methods}
        for batch in make_dataloader(cuts, max_duration=settings.batch_duration, train=False):
            feats = batch["inputs"].to(device)
            feat_lens = batch_lengths(batch).to(device)
            ids += batch_cut_ids(batch)
            speakers += batch_speakers(batch)
            refs += list(batch_texts(batch))
            for m in methods:  # in fp32, as the authors decode
                hyps[m] += [data.tokenizer.decode(h)
                            for h in decode(model, feats, feat_lens, m, beam=settings.beam,
                                           unk_id=data.tokenizer.unk_id)]
        for m in methods:
            out[(test_name, m)] = utterance_errors(refs, hyps[m], data.unit, ids=ids, speakers=speakers)
            write_recogs(out_dir / f"recogs-{test_name}-{m}.txt", ids, refs, hyps[m])
            write_errs(out_dir / f"errs-{test_name}-{m}.txt", ids, refs, hyps[m], data.unit)
        write_wer_summary(out_dir / f"wer-summary-{test_name}.txt",
                          {m: out[(test_name, m)].stats() for m in methods}, header)
    return out


def decode_dir(run_dir: Path, epoch: int, settings: DecodeSettings) -> Path:
    """Where the result files of one decode of a cell go."""
    return Path(run_dir) / "decode" / f"epoch-{epoch}-{settings.averaging_key()}"


def decode_epoch(cell: Cell, data: CellData, ckpt_dir: Path, epoch: int, device: torch.device,
                 store: Any, log: logging.Logger,
                 settings: Optional[DecodeSettings] = None) -> list[DecodeResult]:
    """Decode a cell's checkpoints after ``epoch`` (the cell's decode settings unless given)."""
    settings = settings or DecodeSettings.from_config(cell.config)
    run_dir = Path(ckpt_dir).parent
    model = build_cell_model(cell, data.tokenizer)
    methods = applicable_methods(settings.methods, model, cell.objective, log)
    avg = average_epochs(ckpt_dir, epoch, settings.avg, settings.use_averaged_model)
    model.load_state_dict(avg.weights)
    asked = settings
    # stored and named after what was averaged (fewer epochs than asked, or plain weights)
    settings = settings.with_(avg=avg.avg, use_averaged_model=avg.averaged_model)
    if settings.averaging_key() != asked.averaging_key():
        log.warning("decode epoch %d: asked for %s, decoded as %s (results stored under it): %s", epoch,
                    asked.averaging_key(), settings.averaging_key(), avg.note)
    log.info("decoding epoch %d with avg %d: weights of %s", epoch, settings.avg, avg.note)
    out_dir = decode_dir(run_dir, epoch, settings)
    stats = decode_model(model, data, settings, methods, device, out_dir,
                         f"cell {cell.name} ({cell.cell_id}), epoch {epoch}, avg {settings.avg}: {avg.note}")
    results = [DecodeResult(t, m, epoch, settings.key(m), avg.note, u.stats(), u) for (t, m), u in stats.items()]
    for r in results:
        log.info("epoch %d %s %s %s: %s %.2f%% (%d errors / %d)", epoch, r.test_set, r.method,
                 r.decode_key, "CER" if data.unit == "char" else "WER", r.stats.wer, r.stats.errors,
                 r.stats.ref_words)
    if store is not None:
        record(store, cell.cell_id, results)
    write_tensorboard(run_dir / "tensorboard", results, avg.step, data.unit)
    log.info("decode files in %s", out_dir)
    return results


def record(store: Any, cell_id: str, results: list[DecodeResult]) -> None:
    """One ``wers`` row per result (epoch 0 for a checkpoint that records none) and its
    utterances' counts under the same key (written first: a ``wers`` row never lacks them)."""
    for r in results:
        st = r.stats
        if r.utterances is not None:
            store.add_utterances(cell_id, r.test_set, r.method, r.epoch or 0, r.decode_key, r.utterances)
        store.add_wer(cell_id, r.test_set, r.method, r.epoch or 0, decode_key=r.decode_key, unit=st.unit,
                      wer=float(st.wer), errors=int(st.errors), ins=int(st.ins), sub=int(st.subs),
                      ref_words=int(st.ref_words), averaged=r.averaged, **{"del": int(st.dels)})


def write_tensorboard(log_dir: Path, results: list[DecodeResult], step: int, unit: str) -> None:
    """``decode/<set>/<method>/<key>/WER`` (CER for character units) at the checkpoint's step."""
    from torch.utils.tensorboard import SummaryWriter

    name = "CER" if unit == "char" else "WER"
    with SummaryWriter(log_dir=str(log_dir)) as tb:
        for r in results:
            tb.add_scalar(f"decode/{r.test_set}/{r.method}/{r.decode_key}/{name}", r.stats.wer, step)


def last_epoch(ckpt_dir: Path) -> Optional[int]:
    e = epoch_checkpoints(ckpt_dir)
    return max(e) if e else None


class CheckpointError(ValueError):
    """A file given to ``harness decode --checkpoint`` that cannot be decoded as asked."""


def load_checkpoints(paths: list[Path]) -> list[dict[str, Any]]:
    """The trainer's checkpoint format: a dict with the model's ``model`` state dict (and
    optionally ``config`` with variant/objective/overrides, ``model_avg``, ``epoch``, ``step``)."""
    from .checkpoint import load

    states = []
    for p in paths:
        if not Path(p).is_file():
            raise CheckpointError(f"{p}: no such checkpoint")
        try:
            state = load(Path(p))
        except Exception as e:
            raise CheckpointError(f"{p}: not a torch checkpoint ({type(e).__name__}: {e})") from None
        if not isinstance(state, dict) or not isinstance(state.get("model"), dict):
            raise CheckpointError(f"{p}: not in the trainer's checkpoint format (a dict whose 'model' "
                                  "is the model's state dict)")
        states.append(state)
    return states


def checkpoint_model_args(state: dict[str, Any], variant: Optional[str],
                          objective: Optional[str]) -> tuple[str, Any, dict[str, Any]]:
    """(variant, objective, overrides): the command line's, else what the checkpoint records."""
    config = state.get("config") if isinstance(state.get("config"), dict) else {}
    variant = variant or config.get("variant") or state.get("variant")
    if not variant:
        raise CheckpointError("the checkpoint does not name its variant: give --variant NAME")
    objective = objective or config.get("objective") or state.get("objective") or "transducer"
    overrides = dict(config.get("overrides") or state.get("overrides") or {})
    return str(variant), objective, overrides


@torch.no_grad()
def decode_checkpoints(paths: list[Path], data: CellData, settings: DecodeSettings, device: torch.device,
                       out_dir: Path, log: logging.Logger, variant: Optional[str] = None,
                       objective: Optional[str] = None) -> list[DecodeResult]:
    """Decode checkpoint file(s) outside any grid: one file's weights (its running average with
    ``settings.use_averaged_model``), or several files averaged plainly. Empty
    ``settings.methods``: the default methods of the checkpoint's objective, as a grid cell
    without a ``decode.methods`` gets."""
    from .model_average import average_plain

    states = load_checkpoints(paths)
    variant, objective, overrides = checkpoint_model_args(states[-1], variant, objective)
    names = ", ".join(Path(p).name for p in paths)
    if settings.use_averaged_model:
        if len(states) > 1 or states[0].get("model_avg") is None:
            raise CheckpointError("--use-averaged-model needs one checkpoint that holds the running "
                                  "average ('model_avg'); several checkpoints are averaged plainly")
        model_keys = states[0]["model"]
        weights = {k: v.to(model_keys[k].dtype) for k, v in states[0]["model_avg"].items() if k in model_keys}
        note = f"{names} (running average since the start of training)"
    else:
        weights = average_plain([s["model"] for s in states])
        note = names + (" (plain average)" if len(states) > 1 else " (its own weights)")
    vocab = overrides.get("heads.vocab_size")
    if vocab is not None and int(vocab) != int(data.tokenizer.vocab_size):
        raise CheckpointError(f"the checkpoint's vocabulary has {vocab} units but the corpus's tokenizer "
                              f"has {data.tokenizer.vocab_size}: decode with the corpus (BPE model) it "
                              "was trained with")
    blank = overrides.get("heads.blank_id")
    if blank is not None and int(blank) != int(data.tokenizer.blank_id):
        raise CheckpointError(f"the checkpoint's blank id is {blank} but the corpus's tokenizer's is "
                              f"{data.tokenizer.blank_id}")
    try:
        model = build_asr_model(get_spec(variant, overrides), objective, data.tokenizer)
        model.load_state_dict(weights)
    except (RuntimeError, KeyError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"the checkpoint does not fit {variant} ({objective}) with this corpus's "
                              f"vocabulary of {data.tokenizer.vocab_size}: {first[:300]}") from None
    log.info("decoding %s: weights of %s", variant, note)
    settings = settings.with_(avg=len(states))
    wanted = settings.methods or tuple(default_decode_methods(
        objective if isinstance(objective, str) else list(objective)))
    methods = applicable_methods(wanted, model, str(objective), log)
    stats = decode_model(model, data, settings, methods, device, out_dir, f"{variant}: {note}")
    epoch = states[-1].get("epoch")
    return [DecodeResult(t, m, int(epoch) if epoch is not None else None, settings.key(m), note, u.stats(), u)
            for (t, m), u in stats.items()]
