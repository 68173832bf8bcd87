"""Decode a trained cell's test sets and record WER per test set and method."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Optional

import torch

from harness.config import Cell
from harness.data import batch_lengths, batch_texts, make_dataloader
from harness.decoding import available_methods, decode, error_rate

from .checkpoint import epoch_checkpoints
from .data_setup import CellData
from .model_average import averaged_weights
from .trainer import build_cell_model


def decoding_methods(cell: Cell, model: Any, log: logging.Logger) -> list[str]:
    """The cell's decode.methods that apply to its heads; an error if none does."""
    avail = list(available_methods(model))
    asked = cell.config.decode_methods
    chosen = [m for m in asked if m in avail]
    skipped = [m for m in asked if m not in avail]
    if skipped:
        log.info("decoding methods %s do not apply to objective %s; skipped", skipped, cell.objective)
    if not chosen:
        raise ValueError(f"decode.methods {asked} has no method for objective "
                         f"{cell.objective}; available: {', '.join(avail)}")
    return chosen


@torch.no_grad()
def decode_epoch(cell: Cell, data: CellData, ckpt_dir: Path, epoch: int, device: torch.device,
                 store: Any, log: logging.Logger) -> dict[tuple[str, str], float]:
    """Decode every test set with every method after ``epoch``; returns {(test set, method): WER}."""
    dcfg = cell.config.decode
    model = build_cell_model(cell, data.tokenizer)
    model.load_state_dict(averaged_weights(ckpt_dir, epoch, dcfg.avg, dcfg.use_averaged_model))
    model.to(device).eval()
    methods = decoding_methods(cell, model, log)
    out: dict[tuple[str, str], float] = {}
    for test_name, cuts in data.test_cuts.items():
        refs: dict[str, list[str]] = {m: [] for m in methods}
        hyps: dict[str, list[str]] = {m: [] for m in methods}
        dl = make_dataloader(cuts, max_duration=dcfg.batch_duration, train=False)
        for batch in dl:
            feats = batch["inputs"].to(device)
            feat_lens = batch_lengths(batch).to(device)
            texts = batch_texts(batch)
            for m in methods:  # in fp32, as the authors decode
                ids = decode(model, feats, feat_lens, m, beam=dcfg.beam)
                hyps[m] += [data.tokenizer.decode(h) for h in ids]
                refs[m] += list(texts)
        for m in methods:
            st = error_rate(refs[m], hyps[m], data.unit)
            out[(test_name, m)] = float(st.wer)
            if store is not None:
                store.add_wer(cell.cell_id, test_name, m, epoch, unit=data.unit, wer=float(st.wer),
                              errors=int(st.errors), ins=int(st.ins), sub=int(st.subs),
                              ref_words=int(st.ref_words), **{"del": int(st.dels)})
            log.info("epoch %d %s %s: %s %.2f%% (%d errors / %d)", epoch, test_name, m,
                     "CER" if data.unit == "char" else "WER", st.wer, st.errors, st.ref_words)
    return out


def last_epoch(ckpt_dir: Path) -> Optional[int]:
    e = epoch_checkpoints(ckpt_dir)
    return max(e) if e else None
